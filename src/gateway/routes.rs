//! The route table: every `google.api.http` binding of the served methods,
//! indexed in a segment trie so a request is matched by walking its path
//! once (literal children first, then `*`, then `**`), never by scanning a
//! list of patterns.

use std::collections::HashMap;

use http::Method;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MethodDescriptor, Value};

use super::template::{PathTemplate, Segment, Variable};
use crate::proto::google::api::{HttpRule, http_rule::Pattern};

/// What a binding takes from the request body.
#[derive(Clone, Debug)]
pub enum BodyRule {
    /// No body: every unbound field comes from the query string.
    None,
    /// `body: "*"`: the body is the whole request message.
    All,
    /// `body: "field"`: the body is that top-level field.
    Field(FieldDescriptor),
}

/// One REST binding of an RPC.
#[derive(Clone, Debug)]
pub struct Route {
    /// The RPC it calls.
    pub method: MethodDescriptor,
    /// Its gRPC path, `/package.Service/Method`.
    pub grpc_path: String,
    /// The HTTP method (`custom` kinds included).
    pub http_method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The path variables with their resolved field paths.
    pub variables: Vec<(Vec<FieldDescriptor>, Variable)>,
    /// What the body carries.
    pub body: BodyRule,
    /// `response_body`: the response field sent instead of the whole message.
    pub response_body: Option<FieldDescriptor>,
    /// How a server stream is resumed, when it can be (see [`Resume`]).
    pub resume: Option<Resume>,
}

/// A server stream that can be resumed: its request has an `int64
/// after_cursor` and each of its messages an `int64 cursor` (a field of its
/// own, or of one of its message fields). Over Server-Sent Events each
/// message's cursor is its event `id`, and a `Last-Event-ID` header, which
/// a reconnecting client sends with the last id it saw, resumes after it.
#[derive(Clone, Debug)]
pub struct Resume {
    /// The request field the stream resumes after.
    pub after: FieldDescriptor,
    /// The path to each message's cursor.
    pub cursor: Vec<FieldDescriptor>,
}

impl Resume {
    /// The resume fields of `method`, when it is a server stream that has
    /// them.
    fn of(method: &MethodDescriptor) -> Option<Resume> {
        let int64 = |field: &FieldDescriptor| {
            matches!(field.kind(), Kind::Int64) && !field.is_list() && !field.is_map()
        };
        if !method.is_server_streaming() {
            return None;
        }
        let after = method
            .input()
            .get_field_by_name("after_cursor")
            .filter(int64)?;
        let output = method.output();
        if let Some(cursor) = output.get_field_by_name("cursor").filter(int64) {
            return Some(Resume {
                after,
                cursor: vec![cursor],
            });
        }
        output.fields().find_map(|outer| match outer.kind() {
            Kind::Message(inner) if !outer.is_list() && !outer.is_map() => inner
                .get_field_by_name("cursor")
                .filter(int64)
                .map(|cursor| Resume {
                    after: after.clone(),
                    cursor: vec![outer.clone(), cursor],
                }),
            _ => None,
        })
    }
}

impl Route {
    /// Whether the field at `path` (proto names) is set by the path or the
    /// body, so the query string may not set it.
    pub fn binds(&self, path: &[FieldDescriptor]) -> bool {
        match &self.body {
            BodyRule::All => return true,
            BodyRule::Field(field) if path.first() == Some(field) => return true,
            _ => {}
        }
        self.variables.iter().any(|(bound, _)| {
            let n = bound.len().min(path.len());
            bound[..n] == path[..n]
        })
    }
}

/// The result of matching a request.
pub enum Match<'a> {
    /// A binding matched; the captured variable values are raw (still
    /// percent-encoded) path text, one per route variable.
    Found(&'a Route, Vec<String>),
    /// The path is known but not with this method; the allowed methods.
    MethodNotAllowed(Vec<Method>),
    /// No binding has this path.
    NotFound,
}

#[derive(Default, Debug)]
struct Node {
    literals: HashMap<String, Node>,
    single: Option<Box<Node>>,
    multi: Option<Box<Node>>,
    routes: Vec<(Method, usize)>,
}

/// Every binding of the served methods, ready for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    trees: HashMap<Option<String>, Node>,
}

impl RouteTable {
    /// Builds the table from the `google.api.http` rules of `services`
    /// (full names) in `pool`. Every unparsable or conflicting rule is
    /// reported, each naming its method.
    pub fn build(pool: &DescriptorPool, services: &[String]) -> Result<RouteTable, String> {
        let extension = pool
            .get_extension_by_name("google.api.http")
            .ok_or("the descriptor set lacks google/api/annotations.proto")?;
        let mut table = RouteTable::default();
        let mut problems = Vec::new();
        for service in services {
            let Some(service) = pool.get_service_by_name(service) else {
                problems.push(format!("service {service} is not in the descriptor set"));
                continue;
            };
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let rule = match options.get_extension(&extension).as_ref() {
                    Value::Message(message) => message.transcode_to::<HttpRule>(),
                    _ => continue,
                };
                let rule = match rule {
                    Ok(rule) => rule,
                    Err(error) => {
                        problems.push(format!("{}: unreadable rule: {error}", method.full_name()));
                        continue;
                    }
                };
                if method.is_client_streaming() {
                    problems.push(format!(
                        "{}: client- and bidi-streaming methods are gRPC-only and cannot have a google.api.http rule",
                        method.full_name()
                    ));
                    continue;
                }
                let mut bindings = vec![rule.clone()];
                for nested in &rule.additional_bindings {
                    if !nested.additional_bindings.is_empty() {
                        problems.push(format!(
                            "{}: additional_bindings cannot nest",
                            method.full_name()
                        ));
                    }
                    bindings.push(nested.clone());
                }
                for binding in bindings {
                    match route(&method, &binding) {
                        Ok(route) => {
                            if let Err(problem) = table.insert(route) {
                                problems.push(problem);
                            }
                        }
                        Err(problem) => problems.push(format!("{}: {problem}", method.full_name())),
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Every binding, in the order of the descriptor set.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    fn insert(&mut self, route: Route) -> Result<(), String> {
        let mut node = self.trees.entry(route.template.verb.clone()).or_default();
        for segment in &route.template.segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                Segment::Single => node.single.get_or_insert_default(),
                Segment::Multi => node.multi.get_or_insert_default(),
            };
        }
        if let Some((_, existing)) = node.routes.iter().find(|(m, _)| *m == route.http_method) {
            let existing = &self.routes[*existing];
            return Err(format!(
                "{} {} of {} conflicts with {} {} of {}: both match the same requests",
                route.http_method,
                route.template,
                route.method.full_name(),
                existing.http_method,
                existing.template,
                existing.method.full_name()
            ));
        }
        node.routes
            .push((route.http_method.clone(), self.routes.len()));
        self.routes.push(route);
        Ok(())
    }

    /// Matches a request path (as received, percent-encoded) and method.
    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let Some(rest) = path.strip_prefix('/') else {
            return Match::NotFound;
        };
        let components: Vec<&str> = rest.split('/').collect();
        let mut allowed: Vec<Method> = Vec::new();

        // With a verb: the last component's text after its last `:`.
        let last = components.last().copied().unwrap_or_default();
        if let Some((head, verb)) = last.rsplit_once(':')
            && let Some(tree) = self.trees.get(&Some(verb.to_owned()))
        {
            let mut with_verb = components.clone();
            *with_verb.last_mut().expect("split yields a component") = head;
            if let Some(node) = walk(tree, &with_verb, 0) {
                if let Some(found) = self.found(node, method, &with_verb) {
                    return found;
                }
                allowed.extend(node.routes.iter().map(|(m, _)| m.clone()));
            }
        }
        if let Some(tree) = self.trees.get(&None)
            && let Some(node) = walk(tree, &components, 0)
        {
            if let Some(found) = self.found(node, method, &components) {
                return found;
            }
            allowed.extend(node.routes.iter().map(|(m, _)| m.clone()));
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            allowed.dedup();
            Match::MethodNotAllowed(allowed)
        }
    }

    fn found<'a>(&'a self, node: &Node, method: &Method, components: &[&str]) -> Option<Match<'a>> {
        let (_, index) = node.routes.iter().find(|(m, _)| m == method)?;
        let route = &self.routes[*index];
        let values = route
            .variables
            .iter()
            .map(|(_, variable)| {
                let end = variable.end.unwrap_or(components.len());
                components[variable.start..end].join("/")
            })
            .collect();
        Some(Match::Found(route, values))
    }
}

/// Walks the trie: literal first, then `*`, then `**`; returns the node
/// of a complete match that has routes.
fn walk<'a>(node: &'a Node, components: &[&str], at: usize) -> Option<&'a Node> {
    if at == components.len() {
        if !node.routes.is_empty() {
            return Some(node);
        }
        // `**` also matches zero segments.
        return node.multi.as_deref().filter(|n| !n.routes.is_empty());
    }
    let component = components[at];
    if let Some(child) = node.literals.get(component)
        && let Some(found) = walk(child, components, at + 1)
    {
        return Some(found);
    }
    if !component.is_empty()
        && let Some(child) = node.single.as_deref()
        && let Some(found) = walk(child, components, at + 1)
    {
        return Some(found);
    }
    node.multi.as_deref().filter(|n| !n.routes.is_empty())
}

/// Turns one binding into a route, resolving every field it names.
fn route(method: &MethodDescriptor, rule: &HttpRule) -> Result<Route, String> {
    let (http_method, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p),
        Some(Pattern::Put(p)) => (Method::PUT, p),
        Some(Pattern::Post(p)) => (Method::POST, p),
        Some(Pattern::Delete(p)) => (Method::DELETE, p),
        Some(Pattern::Patch(p)) => (Method::PATCH, p),
        Some(Pattern::Custom(custom)) => (
            Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("custom kind `{}` is not an HTTP method", custom.kind))?,
            &custom.path,
        ),
        None => {
            return Err("the rule has no pattern (get, put, post, delete, patch or custom)".into());
        }
    };
    let template = PathTemplate::parse(path).map_err(|e| format!("path template `{path}`: {e}"))?;
    let input = method.input();
    let mut variables = Vec::new();
    for variable in &template.variables {
        let fields = resolve_path(&input, &variable.field_path).map_err(|e| {
            format!(
                "path template `{path}`: variable `{}`: {e}",
                variable.field_path.join(".")
            )
        })?;
        let leaf = fields.last().expect("a field path has a field");
        if !super::request::is_scalar_like(leaf) {
            return Err(format!(
                "path template `{path}`: variable `{}` names a field that a path segment cannot hold",
                variable.field_path.join(".")
            ));
        }
        variables.push((fields, variable.clone()));
    }
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::All,
        name => BodyRule::Field(
            input
                .get_field_by_name(name)
                .ok_or_else(|| format!("body `{name}` is not a field of {}", input.full_name()))?,
        ),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
            format!(
                "response_body `{name}` is not a field of {}",
                method.output().full_name()
            )
        })?),
    };
    Ok(Route {
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
        http_method,
        template,
        variables,
        body,
        response_body,
        resume: Resume::of(method),
    })
}

/// Resolves a dotted field path (proto or JSON names) against a message.
pub fn resolve_path(
    message: &prost_reflect::MessageDescriptor,
    path: &[String],
) -> Result<Vec<FieldDescriptor>, String> {
    let mut fields = Vec::with_capacity(path.len());
    let mut current = message.clone();
    for (i, name) in path.iter().enumerate() {
        let field = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
            .ok_or_else(|| format!("`{name}` is not a field of {}", current.full_name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
                _ => {
                    return Err(format!(
                        "`{name}` of {} is not a singular message, so it has no sub-fields",
                        current.full_name()
                    ));
                }
            }
        }
        fields.push(field);
    }
    Ok(fields)
}
