//! Kubernetes' defaults and validation rules for the Pod fields podsup supports.
//!
//! [`apply_defaults`] fills what Kubernetes would default, so that two manifests that mean the
//! same compare equal. [`validate`] returns every rule broken, each with the field path it
//! concerns; the caller turns paths into file:line:col. Messages follow Kubernetes' own
//! wording (`Required value`, `Invalid value: …`, `Unsupported value: …`). Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::*;

/// One broken rule: the field path and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub msg: String,
}

/// Signals accepted by `lifecycle.stopSignal`, as Kubernetes lists them (Linux).
pub const STOP_SIGNALS: &[&str] = &[
    "SIGABRT",
    "SIGALRM",
    "SIGBUS",
    "SIGCHLD",
    "SIGCLD",
    "SIGCONT",
    "SIGFPE",
    "SIGHUP",
    "SIGILL",
    "SIGINT",
    "SIGIO",
    "SIGIOT",
    "SIGKILL",
    "SIGPIPE",
    "SIGPOLL",
    "SIGPROF",
    "SIGPWR",
    "SIGQUIT",
    "SIGSEGV",
    "SIGSTKFLT",
    "SIGSTOP",
    "SIGSYS",
    "SIGTERM",
    "SIGTRAP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGUSR1",
    "SIGUSR2",
    "SIGVTALRM",
    "SIGWINCH",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMAX-14",
    "SIGRTMAX-13",
    "SIGRTMAX-12",
    "SIGRTMAX-11",
    "SIGRTMAX-10",
    "SIGRTMAX-9",
    "SIGRTMAX-8",
    "SIGRTMAX-7",
    "SIGRTMAX-6",
    "SIGRTMAX-5",
    "SIGRTMAX-4",
    "SIGRTMAX-3",
    "SIGRTMAX-2",
    "SIGRTMAX-1",
    "SIGRTMAX",
];

/// Field paths of `status.podIP` and friends that `fieldRef` may name.
const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "status.podIP",
];

/// Fills in what Kubernetes defaults, so that specs that mean the same compare equal.
pub fn apply_defaults(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".into());
    }
    let spec = &mut pod.spec;
    spec.restart_policy.get_or_insert(RestartPolicy::Always);
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert(DnsPolicy::ClusterFirst);
    spec.enable_service_links.get_or_insert(true);
    let host_network = spec.host_network;
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        default_container(c, host_network);
    }
    for v in &mut spec.volumes {
        if let Some(hp) = &mut v.host_path {
            hp.type_.get_or_insert(HostPathType::Unset);
        }
    }
    if let Some(sc) = &mut spec.security_context
        && sc == &PodSecurityContext::default()
    {
        spec.security_context = None;
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.is_none() {
        // Kubernetes: Always for :latest or no tag, IfNotPresent otherwise (a digest counts as a tag).
        let latest = image_tag(&c.image).is_none_or(|t| t == "latest");
        c.image_pull_policy = Some(if latest && !c.image.contains('@') {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        });
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert(TerminationMessagePolicy::File);
    for p in &mut c.ports {
        p.protocol.get_or_insert(Protocol::Tcp);
        if host_network && p.host_port.is_none() {
            p.host_port = Some(p.container_port);
        }
    }
    for e in &mut c.env {
        if let Some(fr) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            fr.api_version.get_or_insert_with(|| "v1".into());
        }
    }
    // A limit without a request requests the limit.
    let limits = c.resources.limits.clone();
    for (name, q) in limits {
        c.resources.requests.entry(name).or_insert(q);
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        // Kubernetes' SetDefaults_Probe: unset or 0 means the default.
        probe.initial_delay_seconds.get_or_insert(0);
        for (v, d) in [
            (&mut probe.timeout_seconds, 1),
            (&mut probe.period_seconds, 10),
            (&mut probe.success_threshold, 1),
            (&mut probe.failure_threshold, 3),
        ] {
            if v.is_none_or(|x| x == 0) {
                *v = Some(d);
            }
        }
        if let Some(h) = &mut probe.http_get {
            default_http(h);
        }
    }
    if let Some(lc) = &mut c.lifecycle {
        for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
            if let Some(hg) = &mut h.http_get {
                default_http(hg);
            }
        }
    }
}

fn default_http(h: &mut HttpGetAction) {
    h.path.get_or_insert_with(|| "/".into());
    h.scheme.get_or_insert(UriScheme::Http);
}

/// The tag of an image reference, if it has one (`busybox:1.36` → `1.36`).
fn image_tag(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t)
}

struct V {
    errs: Vec<FieldError>,
}

impl V {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errs.push(FieldError {
            path: path.into(),
            msg: msg.into(),
        });
    }
    fn required(&mut self, path: impl Into<String>) {
        self.err(path, "Required value");
    }
    fn required_why(&mut self, path: impl Into<String>, why: &str) {
        self.err(path, format!("Required value: {why}"));
    }
    fn invalid(&mut self, path: impl Into<String>, value: impl std::fmt::Debug, why: &str) {
        self.err(path, format!("Invalid value: {value:?}: {why}"));
    }
    fn non_negative(&mut self, path: String, v: Option<i64>) {
        if let Some(v) = v
            && v < 0
        {
            self.invalid(path, v, "must be greater than or equal to 0");
        }
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Kubernetes' IANA_SVC_NAME: at most 15 characters, a-z0-9 and '-', at least one letter,
/// no leading, trailing or double '-'.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A qualified name (label and annotation keys): optional DNS subdomain prefix and '/', then
/// a name of at most 63 characters of alphanumerics, '-', '_' and '.', alphanumeric at both ends.
fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Some(format!("prefix part {DNS1123_SUBDOMAIN_MSG}"));
    }
    if !is_label_value(name) || name.is_empty() {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".into());
    }
    None
}

fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

/// Environment variable names: Kubernetes (1.34) accepts any printable ASCII but '='.
fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn is_abs_clean(p: &str) -> bool {
    p.starts_with('/')
}

fn has_dotdot(p: &str) -> bool {
    p.split('/').any(|s| s == "..")
}

/// Checks every rule; returns the broken ones (empty when the pod is valid).
pub fn validate(pod: &Pod) -> Vec<FieldError> {
    let mut v = V { errs: Vec::new() };
    if pod.api_version != "v1" {
        v.err(
            "apiVersion",
            format!(
                "Unsupported value: {:?}: supported values: \"v1\"",
                pod.api_version
            ),
        );
    }
    validate_meta(&mut v, &pod.metadata);
    validate_spec(&mut v, pod);
    v.errs
}

fn validate_meta(v: &mut V, m: &ObjectMeta) {
    if m.name.is_empty() {
        v.err("metadata.name", "Required value: name is required");
    } else if !is_dns1123_subdomain(&m.name) {
        v.invalid("metadata.name", &m.name, DNS1123_SUBDOMAIN_MSG);
    }
    if let Some(ns) = &m.namespace
        && !is_dns1123_label(ns)
    {
        v.invalid("metadata.namespace", ns, DNS1123_LABEL_MSG);
    }
    for (k, val) in &m.labels {
        if let Some(p) = qualified_name_problem(k) {
            v.invalid(format!("metadata.labels[{k}]"), k, &p);
        }
        if !is_label_value(val) {
            v.invalid(
                format!("metadata.labels[{k}]"),
                val,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters",
            );
        }
    }
    let mut total = 0;
    for (k, val) in &m.annotations {
        if let Some(p) = qualified_name_problem(k) {
            v.invalid(format!("metadata.annotations[{k}]"), k, &p);
        }
        total += k.len() + val.len();
    }
    if total > 256 * 1024 {
        v.err(
            "metadata.annotations",
            "Too long: must have at most 262144 bytes",
        );
    }
}

fn validate_spec(v: &mut V, pod: &Pod) {
    let spec = &pod.spec;
    if spec.containers.is_empty() {
        v.required("spec.containers");
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        v.invalid(
            "spec.terminationGracePeriodSeconds",
            g,
            "must be greater than or equal to 0",
        );
    }
    if let Some(d) = spec.active_deadline_seconds
        && d < 1
    {
        v.invalid(
            "spec.activeDeadlineSeconds",
            d,
            "must be between 1 and 2147483647, inclusive",
        );
    }
    if let Some(h) = &spec.hostname
        && !is_dns1123_label(h)
    {
        v.invalid("spec.hostname", h, DNS1123_LABEL_MSG);
    }
    if let Some(s) = &spec.subdomain
        && !is_dns1123_label(s)
    {
        v.invalid("spec.subdomain", s, DNS1123_LABEL_MSG);
    }
    if spec.host_pid && spec.share_process_namespace() {
        v.invalid(
            "spec.shareProcessNamespace",
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        );
    }
    if let Some(os) = &spec.os
        && os.name != "linux"
    {
        v.err(
            "spec.os.name",
            format!(
                "Unsupported value: {:?}: supported values: \"linux\"",
                os.name
            ),
        );
    }
    validate_dns(v, spec);
    for (i, a) in spec.host_aliases.iter().enumerate() {
        let p = format!("spec.hostAliases[{i}]");
        if !is_ip(&a.ip) {
            v.invalid(format!("{p}.ip"), &a.ip, "must be a valid IP address");
        }
        for (j, h) in a.hostnames.iter().enumerate() {
            if !is_dns1123_subdomain(h) {
                v.invalid(format!("{p}.hostnames[{j}]"), h, DNS1123_SUBDOMAIN_MSG);
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        validate_ids(
            v,
            "spec.securityContext",
            sc.run_as_user,
            sc.run_as_group,
            sc.run_as_non_root,
        );
        for (i, g) in sc.supplemental_groups.iter().enumerate() {
            validate_id(
                v,
                format!("spec.securityContext.supplementalGroups[{i}]"),
                *g,
            );
        }
        validate_seccomp(
            v,
            "spec.securityContext.seccompProfile",
            sc.seccomp_profile.as_ref(),
        );
    }
    if let Some(r) = &spec.resources {
        validate_resources(v, "spec.resources", r);
        validate_pod_resources(v, spec, r);
    }

    // Volumes.
    let mut volumes: HashMap<&str, &Volume> = HashMap::new();
    for (i, vol) in spec.volumes.iter().enumerate() {
        let p = format!("spec.volumes[{i}]");
        if vol.name.is_empty() {
            v.required(format!("{p}.name"));
        } else if !is_dns1123_label(&vol.name) {
            v.invalid(format!("{p}.name"), &vol.name, DNS1123_LABEL_MSG);
        } else if volumes.insert(&vol.name, vol).is_some() {
            v.err(
                format!("{p}.name"),
                format!("Duplicate value: {:?}", vol.name),
            );
        }
        match (&vol.empty_dir, &vol.host_path) {
            (None, None) => v.required_why(
                p.to_string(),
                "must specify a volume type (emptyDir or hostPath)",
            ),
            (Some(_), Some(_)) => v.err(
                format!("{p}.hostPath"),
                "Forbidden: may not specify more than 1 volume type",
            ),
            _ => {}
        }
        if let Some(ed) = &vol.empty_dir {
            if ed.medium == Some(StorageMedium::HugePages) {
                v.err(format!("{p}.emptyDir.medium"), "Unsupported value: \"HugePages\": not supported by podsup (use \"\" or \"Memory\")");
            }
            if let Some(q) = &ed.size_limit
                && q.is_negative()
            {
                v.invalid(
                    format!("{p}.emptyDir.sizeLimit"),
                    q.as_str(),
                    "must be greater than or equal to 0",
                );
            }
        }
        if let Some(hp) = &vol.host_path {
            if hp.path.is_empty() {
                v.required(format!("{p}.hostPath.path"));
            } else if !is_abs_clean(&hp.path) {
                v.invalid(
                    format!("{p}.hostPath.path"),
                    &hp.path,
                    "must be an absolute path",
                );
            } else if has_dotdot(&hp.path) {
                v.invalid(
                    format!("{p}.hostPath.path"),
                    &hp.path,
                    "must not contain '..'",
                );
            }
        }
    }

    // Containers: names unique across init and app containers.
    let mut names: HashSet<&str> = HashSet::new();
    let mut host_ports: HashMap<(i64, Protocol, String), String> = HashMap::new();
    for (list, field) in [
        (&spec.init_containers, "initContainers"),
        (&spec.containers, "containers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("spec.{field}[{i}]");
            if !c.name.is_empty() && is_dns1123_label(&c.name) && !names.insert(&c.name) {
                v.err(
                    format!("{p}.name"),
                    format!("Duplicate value: {:?}", c.name),
                );
            }
            let init = field == "initContainers";
            validate_container(v, &p, c, init, pod, &volumes);
            for (j, port) in c.ports.iter().enumerate() {
                if let Some(hp) = port.host_port
                    && hp > 0
                {
                    let key = (
                        hp,
                        port.protocol.unwrap_or_default(),
                        port.host_ip.clone().unwrap_or_default(),
                    );
                    let here = format!("{p}.ports[{j}].hostPort");
                    if let Some(first) = host_ports.get(&key) {
                        v.err(
                            here,
                            format!(
                                "Duplicate value: \"{hp}/{}\" (also used by {first})",
                                protocol_name(key.1)
                            ),
                        );
                    } else {
                        host_ports.insert(key, here);
                    }
                }
            }
        }
    }
}

fn validate_dns(v: &mut V, spec: &PodSpec) {
    let none = spec.dns_policy == Some(DnsPolicy::None);
    match &spec.dns_config {
        None if none => v.required_why(
            "spec.dnsConfig",
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ),
        None => {}
        Some(dc) => {
            if none && dc.nameservers.is_empty() {
                v.required_why(
                    "spec.dnsConfig.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
            }
            if dc.nameservers.len() > 3 {
                v.invalid(
                    "spec.dnsConfig.nameservers",
                    &dc.nameservers,
                    "must not have more than 3 nameservers",
                );
            }
            for (i, ns) in dc.nameservers.iter().enumerate() {
                if !is_ip(ns) {
                    v.invalid(
                        format!("spec.dnsConfig.nameservers[{i}]"),
                        ns,
                        "must be valid IP address",
                    );
                }
            }
            if dc.searches.len() > 32 {
                v.invalid(
                    "spec.dnsConfig.searches",
                    dc.searches.len(),
                    "must not have more than 32 search paths",
                );
            }
            for (i, s) in dc.searches.iter().enumerate() {
                let s2 = s.strip_suffix('.').unwrap_or(s);
                if !is_dns1123_subdomain(s2) {
                    v.invalid(
                        format!("spec.dnsConfig.searches[{i}]"),
                        s,
                        DNS1123_SUBDOMAIN_MSG,
                    );
                }
            }
            for (i, o) in dc.options.iter().enumerate() {
                if o.name.is_empty() {
                    v.required(format!("spec.dnsConfig.options[{i}].name"));
                }
            }
        }
    }
}

fn validate_id(v: &mut V, path: String, id: i64) {
    if !(0..=2_147_483_647).contains(&id) {
        v.invalid(path, id, "must be between 0 and 2147483647, inclusive");
    }
}

fn validate_ids(v: &mut V, p: &str, user: Option<i64>, group: Option<i64>, non_root: Option<bool>) {
    if let Some(u) = user {
        validate_id(v, format!("{p}.runAsUser"), u);
        if u == 0 && non_root == Some(true) {
            v.invalid(
                format!("{p}.runAsNonRoot"),
                true,
                "runAsNonRoot is true but runAsUser is 0",
            );
        }
    }
    if let Some(g) = group {
        validate_id(v, format!("{p}.runAsGroup"), g);
    }
}

fn validate_seccomp(v: &mut V, p: &str, s: Option<&SeccompProfile>) {
    if let Some(s) = s
        && s.type_ == SeccompProfileType::Localhost
    {
        v.err(format!("{p}.type"), "Unsupported value: \"Localhost\": not supported by podsup (use RuntimeDefault or Unconfined)");
    }
}

fn validate_resources(v: &mut V, p: &str, r: &ResourceRequirements) {
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map {
            let fp = format!("{p}.{kind}[{name}]");
            match name.as_str() {
                "cpu" | "memory" => {}
                "ephemeral-storage" => {
                    v.err(fp.clone(), "Unsupported value: \"ephemeral-storage\": not supported by podsup (use emptyDir.sizeLimit)")
                }
                n if n.starts_with("hugepages-") => v.err(fp.clone(), format!("Unsupported value: {n:?}: hugepages are not supported by podsup")),
                n if n.contains('/') => v.err(fp.clone(), format!("Unsupported value: {n:?}: extended resources are not supported by podsup")),
                n => v.err(fp.clone(), format!("Unsupported value: {n:?}: supported values: \"cpu\", \"memory\"")),
            }
            if q.is_negative() {
                v.invalid(fp, q.as_str(), "must be greater than or equal to 0");
            } else if name == "memory" && q.nanos() % 1_000_000_000 != 0 {
                v.invalid(fp, q.as_str(), "must be a whole number of bytes");
            }
        }
    }
    for (name, req) in &r.requests {
        if let Some(lim) = r.limits.get(name)
            && req > lim
        {
            v.invalid(
                format!("{p}.requests[{name}]"),
                req.as_str(),
                &format!(
                    "must be less than or equal to {name} limit of {}",
                    lim.as_str()
                ),
            );
        }
    }
}

/// Pod-level resources (KEP-2837): no container may be allowed more than the pod, and the
/// pod's requests cover what its app containers request.
fn validate_pod_resources(v: &mut V, spec: &PodSpec, r: &ResourceRequirements) {
    for (name, pod_limit) in &r.limits {
        for (list, field) in [
            (&spec.init_containers, "initContainers"),
            (&spec.containers, "containers"),
        ] {
            for (i, c) in list.iter().enumerate() {
                if let Some(l) = c.resources.limits.get(name)
                    && l > pod_limit
                {
                    v.invalid(
                        format!("spec.{field}[{i}].resources.limits[{name}]"),
                        l.as_str(),
                        &format!(
                            "must be less than or equal to pod limit of {}",
                            pod_limit.as_str()
                        ),
                    );
                }
            }
        }
    }
    for (name, pod_req) in &r.requests {
        let sum: i128 = spec
            .containers
            .iter()
            .filter_map(|c| c.resources.requests.get(name))
            .map(Quantity::nanos)
            .sum();
        if sum > pod_req.nanos() {
            v.invalid(
                format!("spec.resources.requests[{name}]"),
                pod_req.as_str(),
                "must be greater than or equal to the sum of the containers' requests",
            );
        }
    }
}

fn validate_container(
    v: &mut V,
    p: &str,
    c: &Container,
    init: bool,
    pod: &Pod,
    volumes: &HashMap<&str, &Volume>,
) {
    let sidecar = init && c.restart_policy == Some(RestartPolicy::Always);
    if c.name.is_empty() {
        v.required(format!("{p}.name"));
    } else if !is_dns1123_label(&c.name) {
        v.invalid(format!("{p}.name"), &c.name, DNS1123_LABEL_MSG);
    }
    if c.image.is_empty() {
        v.required(format!("{p}.image"));
    } else if c.image.trim() != c.image {
        v.invalid(
            format!("{p}.image"),
            &c.image,
            "must not have leading or trailing whitespace",
        );
    }
    if let Some(wd) = &c.working_dir
        && !wd.is_empty()
        && !is_abs_clean(wd)
    {
        v.invalid(format!("{p}.workingDir"), wd, "must be an absolute path");
    }
    if let Some(tp) = &c.termination_message_path {
        if !is_abs_clean(tp) {
            v.invalid(
                format!("{p}.terminationMessagePath"),
                tp,
                "must be an absolute path",
            );
        } else if tp.len() > 4096 {
            v.invalid(
                format!("{p}.terminationMessagePath"),
                tp.len(),
                "must not be longer than 4096 characters",
            );
        }
    }

    // restartPolicy on a container: init containers take only Always (a sidecar); regular
    // containers take a policy only together with restartPolicyRules (KEP-5307).
    if let Some(rp) = c.restart_policy {
        if init && rp != RestartPolicy::Always && c.restart_policy_rules.is_empty() {
            v.err(
                format!("{p}.restartPolicy"),
                format!("Unsupported value: {rp:?}: supported values: \"Always\""),
            );
        }
    } else if !c.restart_policy_rules.is_empty() {
        v.required_why(
            format!("{p}.restartPolicy"),
            "must be set when restartPolicyRules are used",
        );
    }
    for (i, rule) in c.restart_policy_rules.iter().enumerate() {
        let rp = format!("{p}.restartPolicyRules[{i}]");
        match &rule.exit_codes {
            None => v.required(format!("{rp}.exitCodes")),
            Some(ec) => {
                if ec.values.is_empty() {
                    v.required(format!("{rp}.exitCodes.values"));
                }
                if ec.values.len() > 255 {
                    v.err(
                        format!("{rp}.exitCodes.values"),
                        "Too many: must have at most 255 items",
                    );
                }
                let mut seen = HashSet::new();
                for (j, code) in ec.values.iter().enumerate() {
                    if !(0..=255).contains(code) {
                        v.invalid(
                            format!("{rp}.exitCodes.values[{j}]"),
                            code,
                            "must be between 0 and 255, inclusive",
                        );
                    }
                    if !seen.insert(code) {
                        v.err(
                            format!("{rp}.exitCodes.values[{j}]"),
                            format!("Duplicate value: {code}"),
                        );
                    }
                }
            }
        }
    }

    // Ports.
    let mut port_names: HashSet<&str> = HashSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        if let Some(n) = &port.name {
            if !is_port_name(n) {
                v.invalid(format!("{pp}.name"), n, "must be no more than 15 characters, contain only lowercase alphanumerics and '-', at least one letter, and not start, end or contain '--'");
            } else if !port_names.insert(n) {
                v.err(format!("{pp}.name"), format!("Duplicate value: {n:?}"));
            }
        }
        if port.container_port == 0 {
            v.required(format!("{pp}.containerPort"));
        } else if !(1..=65535).contains(&port.container_port) {
            v.invalid(
                format!("{pp}.containerPort"),
                port.container_port,
                "must be between 1 and 65535, inclusive",
            );
        }
        if let Some(hp) = port.host_port {
            if !(0..=65535).contains(&hp) {
                v.invalid(
                    format!("{pp}.hostPort"),
                    hp,
                    "must be between 1 and 65535, inclusive",
                );
            } else if pod.spec.host_network && hp != port.container_port {
                v.invalid(
                    format!("{pp}.hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
        if let Some(ip) = &port.host_ip
            && !is_ip(ip)
        {
            v.invalid(format!("{pp}.hostIP"), ip, "must be a valid IP address");
        }
    }

    // Env.
    for (i, e) in c.env.iter().enumerate() {
        let ep = format!("{p}.env[{i}]");
        if e.name.is_empty() {
            v.required(format!("{ep}.name"));
        } else if !is_env_name(&e.name) {
            v.invalid(format!("{ep}.name"), &e.name, "a valid environment variable name must consist only of printable ASCII characters other than '='");
        }
        if let Some(vf) = &e.value_from {
            if e.value.as_deref().is_some_and(|s| !s.is_empty()) {
                v.invalid(
                    format!("{ep}.valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                );
            }
            match &vf.field_ref {
                None => {
                    v.required_why(format!("{ep}.valueFrom"), "must specify one of: `fieldRef`")
                }
                Some(fr) => {
                    let fp = format!("{ep}.valueFrom.fieldRef");
                    if fr.api_version.as_deref().is_some_and(|a| a != "v1") {
                        v.err(
                            format!("{fp}.apiVersion"),
                            format!(
                                "Unsupported value: {:?}: supported values: \"v1\"",
                                fr.api_version.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    if !valid_field_path(&fr.field_path) {
                        if fr.field_path.is_empty() {
                            v.required(format!("{fp}.fieldPath"));
                        } else {
                            v.err(format!("{fp}.fieldPath"), format!("Unsupported value: {:?}: supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"metadata.labels['<KEY>']\", \"metadata.annotations['<KEY>']\", \"status.podIP\"", fr.field_path));
                        }
                    }
                }
            }
        }
    }

    validate_resources(v, &format!("{p}.resources"), &c.resources);

    // Volume mounts.
    let mut paths: HashSet<&str> = HashSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        if m.name.is_empty() {
            v.required(format!("{mp}.name"));
        } else if !volumes.contains_key(m.name.as_str()) {
            v.err(format!("{mp}.name"), format!("Not found: {:?}", m.name));
        }
        if m.mount_path.is_empty() {
            v.required(format!("{mp}.mountPath"));
        } else if !is_abs_clean(&m.mount_path) {
            v.invalid(
                format!("{mp}.mountPath"),
                &m.mount_path,
                "must be an absolute path",
            );
        } else if has_dotdot(&m.mount_path) {
            v.invalid(
                format!("{mp}.mountPath"),
                &m.mount_path,
                "must not contain '..'",
            );
        } else if !paths.insert(&m.mount_path) {
            v.invalid(format!("{mp}.mountPath"), &m.mount_path, "must be unique");
        }
        if let Some(sp) = &m.sub_path {
            if sp.starts_with('/') {
                v.invalid(format!("{mp}.subPath"), sp, "must be a relative path");
            } else if has_dotdot(sp) {
                v.invalid(format!("{mp}.subPath"), sp, "must not contain '..'");
            }
        }
    }

    // Probes: init containers that are not sidecars may not have any.
    let named_ports: Vec<&str> = c.ports.iter().filter_map(|p| p.name.as_deref()).collect();
    for (probe, field) in [
        (&c.liveness_probe, "livenessProbe"),
        (&c.readiness_probe, "readinessProbe"),
        (&c.startup_probe, "startupProbe"),
    ] {
        let Some(probe) = probe else { continue };
        let pp = format!("{p}.{field}");
        if init && !sidecar {
            v.err(
                pp,
                "Forbidden: may not be set for init containers without restartPolicy=Always"
                    .to_string(),
            );
            continue;
        }
        let handlers = usize::from(probe.exec.is_some())
            + usize::from(probe.http_get.is_some())
            + usize::from(probe.tcp_socket.is_some());
        if handlers == 0 {
            v.required_why(
                pp.to_string(),
                "must specify a handler type (exec, httpGet or tcpSocket)",
            );
        } else if handlers > 1 {
            v.err(
                pp.clone(),
                "Forbidden: may not specify more than 1 handler type",
            );
        }
        validate_handler_parts(
            v,
            &pp,
            probe.exec.as_ref(),
            probe.http_get.as_ref(),
            &named_ports,
        );
        if let Some(t) = &probe.tcp_socket {
            validate_port(v, &format!("{pp}.tcpSocket.port"), &t.port, &named_ports);
            validate_host(v, &format!("{pp}.tcpSocket.host"), t.host.as_deref());
        }
        v.non_negative(
            format!("{pp}.initialDelaySeconds"),
            probe.initial_delay_seconds,
        );
        v.non_negative(format!("{pp}.timeoutSeconds"), probe.timeout_seconds);
        v.non_negative(format!("{pp}.periodSeconds"), probe.period_seconds);
        v.non_negative(format!("{pp}.successThreshold"), probe.success_threshold);
        v.non_negative(format!("{pp}.failureThreshold"), probe.failure_threshold);
        if field != "readinessProbe" && probe.success_threshold.is_some_and(|s| s != 1) {
            v.invalid(
                format!("{pp}.successThreshold"),
                probe.success_threshold.unwrap_or(1),
                "must be 1",
            );
        }
        if let Some(g) = probe.termination_grace_period_seconds {
            if field == "readinessProbe" {
                v.invalid(
                    format!("{pp}.terminationGracePeriodSeconds"),
                    g,
                    "must not be set for readinessProbes",
                );
            } else if g < 1 {
                v.invalid(
                    format!("{pp}.terminationGracePeriodSeconds"),
                    g,
                    "must be greater than 0",
                );
            }
        }
    }

    // Lifecycle.
    if let Some(lc) = &c.lifecycle {
        let lp = format!("{p}.lifecycle");
        if init && !sidecar {
            v.err(
                lp.clone(),
                "Forbidden: may not be set for init containers without restartPolicy=Always",
            );
        }
        for (h, field) in [(&lc.post_start, "postStart"), (&lc.pre_stop, "preStop")] {
            let Some(h) = h else { continue };
            let hp = format!("{lp}.{field}");
            let handlers = usize::from(h.exec.is_some())
                + usize::from(h.http_get.is_some())
                + usize::from(h.sleep.is_some());
            if handlers == 0 {
                v.required_why(
                    hp.to_string(),
                    "must specify a handler type (exec, httpGet or sleep)",
                );
            } else if handlers > 1 {
                v.err(
                    hp.clone(),
                    "Forbidden: may not specify more than 1 handler type",
                );
            }
            validate_handler_parts(v, &hp, h.exec.as_ref(), h.http_get.as_ref(), &named_ports);
            if let Some(s) = &h.sleep
                && (s.seconds < 0 || s.seconds > pod.spec.termination_grace_period_seconds())
            {
                v.invalid(
                    format!("{hp}.sleep.seconds"),
                    s.seconds,
                    "must be non-negative and less than terminationGracePeriodSeconds",
                );
            }
        }
        if let Some(sig) = &lc.stop_signal {
            if pod.spec.os.is_none() {
                v.err(format!("{lp}.stopSignal"), "Forbidden: may not be set when spec.os.name is not set (add `os: {name: linux}` to the pod spec, as Kubernetes requires)");
            } else if !STOP_SIGNALS.contains(&sig.as_str()) {
                v.err(format!("{lp}.stopSignal"), format!("Unsupported value: {sig:?}: must be a signal name such as \"SIGTERM\" or \"SIGUSR1\""));
            }
        }
    }

    // Security context.
    if let Some(sc) = &c.security_context {
        let sp = format!("{p}.securityContext");
        validate_ids(v, &sp, sc.run_as_user, sc.run_as_group, sc.run_as_non_root);
        if sc.run_as_non_root == Some(true)
            && sc.run_as_user.is_none()
            && pod
                .spec
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                == Some(0)
        {
            v.invalid(
                format!("{sp}.runAsNonRoot"),
                true,
                "runAsNonRoot is true but the pod runs as user 0",
            );
        }
        validate_seccomp(
            v,
            &format!("{sp}.seccompProfile"),
            sc.seccomp_profile.as_ref(),
        );
        if let Some(caps) = &sc.capabilities {
            for (list, field) in [(&caps.add, "add"), (&caps.drop, "drop")] {
                for (i, cap) in list.iter().enumerate() {
                    if !cap.eq_ignore_ascii_case("ALL") && capability_number(cap).is_none() {
                        v.err(format!("{sp}.capabilities.{field}[{i}]"), format!("Unsupported value: {cap:?}: not a Linux capability (e.g. \"NET_ADMIN\", \"CAP_SYS_TIME\", or \"ALL\")"));
                    }
                }
            }
        }
        let adds_sys_admin = sc.capabilities.as_ref().is_some_and(|c| {
            c.add
                .iter()
                .any(|a| a == "SYS_ADMIN" || a == "CAP_SYS_ADMIN")
        });
        if sc.allow_privilege_escalation == Some(false)
            && (sc.privileged == Some(true) || adds_sys_admin)
        {
            v.invalid(format!("{sp}.allowPrivilegeEscalation"), false, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true or add CAP_SYS_ADMIN");
        }
    }
    if c.stdin_once && !c.stdin {
        // Kubernetes allows it; it has no effect without stdin. Nothing to check.
    }
}

fn validate_handler_parts(
    v: &mut V,
    p: &str,
    exec: Option<&ExecAction>,
    http: Option<&HttpGetAction>,
    named_ports: &[&str],
) {
    if let Some(e) = exec
        && e.command.is_empty()
    {
        v.required(format!("{p}.exec.command"));
    }
    if let Some(h) = http {
        validate_port(v, &format!("{p}.httpGet.port"), &h.port, named_ports);
        validate_host(v, &format!("{p}.httpGet.host"), h.host.as_deref());
        if h.scheme == Some(UriScheme::Https) {
            v.err(
                format!("{p}.httpGet.scheme"),
                "Unsupported value: \"HTTPS\": not supported by podsup (use HTTP)",
            );
        }
        for (i, hd) in h.http_headers.iter().enumerate() {
            if hd.name.is_empty()
                || !hd
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                v.invalid(
                    format!("{p}.httpGet.httpHeaders[{i}].name"),
                    &hd.name,
                    "must be a valid HTTP header name",
                );
            }
        }
    }
}

/// A probe's or hook's `host`: podsup connects from the pod's network namespace without a
/// resolver in its loop, so an IP address or `localhost` (Kubernetes accepts any name).
fn validate_host(v: &mut V, p: &str, host: Option<&str>) {
    let Some(h) = host.filter(|h| !h.is_empty()) else {
        return;
    };
    if h != "localhost" && h.parse::<std::net::IpAddr>().is_err() {
        v.err(
            p,
            format!("Unsupported value: {h:?}: not supported by podsup (use an IP address or localhost; the default is the pod's address)"),
        );
    }
}

fn validate_port(v: &mut V, p: &str, port: &IntOrString, named_ports: &[&str]) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            v.invalid(p, n, "must be between 1 and 65535, inclusive")
        }
        IntOrString::String(s) if !is_port_name(s) => v.invalid(
            p,
            s,
            "must contain only lowercase alphanumerics and '-', at most 15 characters",
        ),
        IntOrString::String(s) if !named_ports.contains(&s.as_str()) => {
            v.invalid(p, s, "must name a port of this container (ports[].name)")
        }
        _ => {}
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

fn valid_field_path(fp: &str) -> bool {
    if FIELD_PATHS.contains(&fp) {
        return true;
    }
    for prefix in ["metadata.labels['", "metadata.annotations['"] {
        if let Some(key) = fp.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")) {
            return qualified_name_problem(key).is_none();
        }
    }
    false
}

/// Labels sorted, for tests and display.
pub fn sorted_labels(m: &ObjectMeta) -> BTreeMap<&str, &str> {
    m.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_port_name("http"));
        assert!(!is_port_name("80"));
        assert!(!is_port_name("a--b"));
        assert!(!is_port_name("abcdefghijklmnop"));
        assert!(qualified_name_problem("app.kubernetes.io/name").is_none());
        assert!(qualified_name_problem("-bad").is_some());
        assert!(qualified_name_problem("UPPER.com/x").is_some());
    }

    #[test]
    fn probe_zeros_are_kubernetes_defaults() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    livenessProbe: {tcpSocket: {port: 80}, successThreshold: 0, periodSeconds: 0, timeoutSeconds: 0, failureThreshold: 0}\n";
        // successThreshold 0 is defaulted to 1 before the "must be 1" rule, as in Kubernetes.
        let pod = crate::manifest::load_bytes("p.yaml", yaml.as_bytes())
            .unwrap()
            .remove(0);
        let p = pod.spec.containers[0].liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                p.success_threshold,
                p.period_seconds,
                p.timeout_seconds,
                p.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("busybox"), None);
        assert_eq!(image_tag("busybox:1.36"), Some("1.36"));
        assert_eq!(image_tag("localhost:5000/x"), None);
        assert_eq!(image_tag("localhost:5000/x:v1"), Some("v1"));
    }

    #[test]
    fn field_paths() {
        assert!(valid_field_path("metadata.name"));
        assert!(valid_field_path("metadata.labels['app']"));
        assert!(!valid_field_path("metadata.labels[app]"));
        assert!(!valid_field_path("spec.nodeName"));
    }
}
