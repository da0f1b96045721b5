#!/usr/bin/env bash
# A private Postfix instance for benchmarks: its own config and queue
# directories under DIR, one smtpd on 127.0.0.1:PORT, every accepted message
# discarded by the queue manager (what is measured is accepting: SMTP in,
# queue file fsynced, 250 out). Installs Debian's postfix when missing.
#
#   scripts/postfix-peer.sh start DIR PORT [RELAY_PORT]
#   scripts/postfix-peer.sh stop DIR
# With RELAY_PORT, accepted mail is relayed to 127.0.0.1:RELAY_PORT instead
# of discarded (the end-to-end benchmark).
#   scripts/postfix-peer.sh install     (just smtp-sink and smtp-source)
set -euo pipefail

command=${1:?usage: postfix-peer.sh start DIR PORT | stop DIR | install}

install_postfix() {
    if command -v smtp-source > /dev/null && command -v postfix > /dev/null; then
        return
    fi
    echo "postfix-peer: installing Debian's postfix" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postfix > /dev/null
}

case "$command" in
install)
    install_postfix
    exit 0
    ;;
esac
dir=${2:?missing DIR}

case "$command" in
start)
    port=${3:?missing PORT}
    relay=${4:-}
    transport=discard
    [ -z "$relay" ] || transport=smtp
    install_postfix
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    cp /etc/postfix/master.cf "$dir/etc/master.cf" 2> /dev/null ||
        cp /usr/share/postfix/master.cf.dist "$dir/etc/master.cf"
    # Only our listener: replace the stock smtp inet line.
    sed -i -E "s/^smtp +inet.*/127.0.0.1:$port inet n - y - - smtpd/" "$dir/etc/master.cf"
    cat > "$dir/etc/main.cf" << CONF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
myhostname = bench.localhost
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = $transport
relay_transport = $transport
relayhost = ${relay:+[127.0.0.1]:$relay}
local_transport = discard
maillog_file_prefixes = /var, /dev/stdout, $dir
maillog_file = $dir/maillog
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 100
alias_maps =
alias_database =
CONF
    # Postfix only runs non-default configuration directories that the
    # default one lists. Installed with "No configuration", the default
    # directory has no main.cf yet: an empty one means all defaults.
    [ -e /etc/postfix/main.cf ] || touch /etc/postfix/main.cf
    current=$(postconf -h alternate_config_directories 2> /dev/null || true)
    case " $current " in
    *" $dir/etc "*) ;;
    *) postconf -e "alternate_config_directories = ${current:+$current }$dir/etc" ;;
    esac
    chown postfix "$dir/data"
    postfix -c "$dir/etc" set-permissions > /dev/null 2>&1 || true
    postfix -c "$dir/etc" check
    postfix -c "$dir/etc" start
    ;;
stop)
    postfix -c "$dir/etc" stop > /dev/null 2>&1 || true
    ;;
*)
    echo "usage: postfix-peer.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
