//! A container's environment and command line, computed the way the kubelet does.
//!
//! Pure: no I/O. `$(VAR)` expansion follows Kubernetes (`third_party/forked/golang/expansion`):
//! `$(NAME)` becomes the value of an earlier defined manifest variable and stays as written
//! when NAME is unknown, `$$` is a literal `$`, any other `$` is kept.

use std::collections::HashMap;

use crate::model::{Container, EnvVar, Pod};

/// The values a `fieldRef` can point at, known when the pod starts.
#[derive(Clone, Debug, Default)]
pub struct FieldValues {
    pub uid: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

/// Errors in the manifest's env that only show when the container starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("env {name}: fieldRef {path:?} is not supported")]
    UnsupportedField { name: String, path: String },
    #[error("env {name}: no value and no valueFrom")]
    NoValue { name: String },
}

/// Expands `$(VAR)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut plain_start = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        out.push_str(&input[plain_start..i]);
        match bytes[i + 1] {
            b'$' => {
                out.push('$');
                i += 2;
            }
            b'(' => match input[i + 2..].find(')') {
                Some(len) => {
                    let name = &input[i + 2..i + 2 + len];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&input[i..i + 3 + len]),
                    }
                    i += 3 + len;
                }
                None => {
                    // No closing paren: the rest is literal.
                    out.push_str(&input[i..]);
                    i = bytes.len();
                }
            },
            _ => {
                out.push('$');
                i += 1;
            }
        }
        plain_start = i;
    }
    if plain_start < bytes.len() {
        out.push_str(&input[plain_start..]);
    }
    out
}

fn field_value(
    pod: &Pod,
    fields: &FieldValues,
    var: &EnvVar,
    path: &str,
) -> Result<String, EnvError> {
    let unsupported = || EnvError::UnsupportedField {
        name: var.name.clone(),
        path: path.to_string(),
    };
    let key_of = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    let meta = &pod.metadata;
    Ok(match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => fields.uid.clone(),
        "status.podIP" | "status.podIPs" => fields.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => fields.host_ip.clone(),
        "spec.nodeName" => fields.node_name.clone(),
        "spec.serviceAccountName" => String::new(),
        _ => {
            if let Some(k) = key_of("metadata.labels['") {
                meta.labels.get(&k).cloned().unwrap_or_default()
            } else if let Some(k) = key_of("metadata.annotations['") {
                meta.annotations.get(&k).cloned().unwrap_or_default()
            } else {
                return Err(unsupported());
            }
        }
    })
}

/// The container's environment: the image's variables, then `HOSTNAME`, then the manifest's
/// variables in order (each expanded against the manifest variables defined before it).
/// Returns `NAME=value` strings, later names replacing earlier ones in place.
pub fn compute_env(
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    hostname: &str,
    fields: &FieldValues,
) -> Result<Vec<String>, EnvError> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let set =
        |order: &mut Vec<String>, values: &mut HashMap<String, String>, k: &str, v: String| {
            if values.insert(k.to_string(), v).is_none() {
                order.push(k.to_string());
            }
        };
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(&mut order, &mut values, k, v.to_string());
    }
    if !values.contains_key("PATH") {
        set(
            &mut order,
            &mut values,
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    set(&mut order, &mut values, "HOSTNAME", hostname.to_string());
    // Expansion sees only the manifest's own variables, as in the kubelet.
    let mut manifest: HashMap<String, String> = HashMap::new();
    for var in &container.env {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => {
                let lookup = |n: &str| manifest.get(n).cloned();
                expand(v, &lookup)
            }
            (None, Some(src)) => match &src.field_ref {
                Some(f) => field_value(pod, fields, var, &f.field_path)?,
                None => {
                    return Err(EnvError::NoValue {
                        name: var.name.clone(),
                    });
                }
            },
            (None, None) => String::new(),
        };
        manifest.insert(var.name.clone(), value.clone());
        set(&mut order, &mut values, &var.name, value);
    }
    Ok(order.iter().map(|k| format!("{k}={}", values[k])).collect())
}

/// The manifest's variables after expansion, for expanding `command` and `args`.
pub fn manifest_lookup(env: &[String], container: &Container) -> HashMap<String, String> {
    let names: std::collections::HashSet<&str> =
        container.env.iter().map(|e| e.name.as_str()).collect();
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The process's argv: `command`/`args` combined with the image's Entrypoint/Cmd the
/// Kubernetes way, then `$(VAR)` expanded.
pub fn compute_argv(
    container: &Container,
    entrypoint: &[String],
    cmd: &[String],
    vars: &HashMap<String, String>,
) -> Vec<String> {
    let raw: Vec<String> = match (container.command.is_empty(), container.args.is_empty()) {
        (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
        (true, false) => entrypoint.iter().chain(&container.args).cloned().collect(),
        (false, _) => container
            .command
            .iter()
            .chain(&container.args)
            .cloned()
            .collect(),
    };
    let lookup = |n: &str| vars.get(n).cloned();
    raw.iter().map(|a| expand(a, &lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnvVarSource, ObjectFieldSelector};

    fn lk(n: &str) -> Option<String> {
        match n {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let cases = [
            ("plain", "plain"),
            ("$(A)", "a"),
            ("x$(A)y", "xay"),
            ("$(A)$(A)", "aa"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$(B)", "$(B)"),
            ("$(EMPTY)x", "x"),
            ("$A", "$A"),
            ("$", "$"),
            ("a$", "a$"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            ("€$(A)€", "€a€"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &lk), want, "input {input:?}");
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn env_order_expansion_and_field_refs() {
        let mut pod = Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Default::default(),
            spec: Default::default(),
        };
        pod.metadata.name = "web".into();
        pod.metadata.labels.insert("app".into(), "shop".into());
        let mut c = Container {
            env: vec![
                var("GREETING", "hi"),
                var("MSG", "$(GREETING) $(UNSET) $$(GREETING) $(IMG)"),
                EnvVar {
                    name: "POD".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: "metadata.name".into(),
                        }),
                    }),
                },
                EnvVar {
                    name: "APP".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: "metadata.labels['app']".into(),
                        }),
                    }),
                },
                var("IMG", "manifest"),
            ],
            ..Default::default()
        };
        let env = compute_env(
            &pod,
            &c,
            &["IMG=image".into(), "PATH=/bin".into()],
            "web",
            &FieldValues::default(),
        )
        .unwrap();
        assert_eq!(
            env,
            vec![
                "IMG=manifest",
                "PATH=/bin",
                "HOSTNAME=web",
                "GREETING=hi",
                "MSG=hi $(UNSET) $(GREETING) $(IMG)",
                "POD=web",
                "APP=shop",
            ]
        );
        c.command = vec!["echo".into(), "$(POD)".into()];
        c.args = vec!["$(MSG)".into()];
        let argv = compute_argv(
            &c,
            &["/ep".into()],
            &["cmd".into()],
            &manifest_lookup(&env, &c),
        );
        assert_eq!(argv, vec!["echo", "web", "hi $(UNSET) $(GREETING) $(IMG)"]);
    }

    #[test]
    fn command_and_args_with_image_defaults() {
        let ep = vec!["/ep".to_string()];
        let cmd = vec!["c1".to_string()];
        let none = HashMap::new();
        let mut c = Container::default();
        assert_eq!(compute_argv(&c, &ep, &cmd, &none), vec!["/ep", "c1"]);
        c.args = vec!["a".into()];
        assert_eq!(compute_argv(&c, &ep, &cmd, &none), vec!["/ep", "a"]);
        c.command = vec!["/x".into()];
        assert_eq!(compute_argv(&c, &ep, &cmd, &none), vec!["/x", "a"]);
        c.args.clear();
        assert_eq!(compute_argv(&c, &ep, &cmd, &none), vec!["/x"]);
    }
}
