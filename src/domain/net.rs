//! Where an address is: inside the network (loopback, private, link-local
//! and the like) or on the internet. Webhook targets are refused inside it
//! (`webhooks`); a peer inside it is trusted as a reverse proxy when the
//! tracking links read the visitor's address (`api::tracking`).

use std::net::IpAddr;

/// Whether `ip` is inside the network rather than on the internet:
/// loopback, private, link-local, CGNAT, multicast, unspecified,
/// broadcast, "this network", and the IPv4-mapped forms of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // CGNAT, 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                // "This network", 0.0.0.0/8.
                || a == 0
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
            }
        },
    }
}
