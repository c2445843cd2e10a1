//! The Kubernetes fields of each object podsup models, and hints for the ones it refuses.
//!
//! An unknown key is checked against these lists: a field Kubernetes has is "not supported
//! by podsup" (with a hint where one helps), anything else is a typo ("unknown field", with
//! the closest name). docs/manifests.md is checked against these tables by a test.

/// Kubernetes' field names for each struct, keyed by the serde struct name in
/// `crate::model`. Source: the Kubernetes v1.34 API reference.
pub const K8S_FIELDS: &[(&str, &[&str])] = &[
    ("Pod", &["apiVersion", "kind", "metadata", "spec", "status"]),
    (
        "ObjectMeta",
        &[
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
    ),
    (
        "PodSpec",
        &[
            "volumes",
            "initContainers",
            "containers",
            "ephemeralContainers",
            "restartPolicy",
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "dnsPolicy",
            "nodeSelector",
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "nodeName",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "shareProcessNamespace",
            "securityContext",
            "imagePullSecrets",
            "hostname",
            "subdomain",
            "affinity",
            "schedulerName",
            "tolerations",
            "hostAliases",
            "priorityClassName",
            "priority",
            "dnsConfig",
            "readinessGates",
            "runtimeClassName",
            "enableServiceLinks",
            "preemptionPolicy",
            "overhead",
            "topologySpreadConstraints",
            "setHostnameAsFQDN",
            "os",
            "hostUsers",
            "schedulingGates",
            "resourceClaims",
            "resources",
            "hostnameOverride",
        ],
    ),
    (
        "Container",
        &[
            "name",
            "image",
            "command",
            "args",
            "workingDir",
            "ports",
            "envFrom",
            "env",
            "resources",
            "resizePolicy",
            "restartPolicy",
            "restartPolicyRules",
            "volumeMounts",
            "volumeDevices",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "imagePullPolicy",
            "securityContext",
            "stdin",
            "stdinOnce",
            "tty",
        ],
    ),
    (
        "Volume",
        &[
            "name",
            "hostPath",
            "emptyDir",
            "gcePersistentDisk",
            "awsElasticBlockStore",
            "gitRepo",
            "secret",
            "nfs",
            "iscsi",
            "glusterfs",
            "persistentVolumeClaim",
            "rbd",
            "flexVolume",
            "cinder",
            "cephfs",
            "flocker",
            "downwardAPI",
            "fc",
            "azureFile",
            "configMap",
            "vsphereVolume",
            "quobyte",
            "azureDisk",
            "photonPersistentDisk",
            "projected",
            "portworxVolume",
            "scaleIO",
            "storageos",
            "csi",
            "ephemeral",
            "image",
        ],
    ),
    ("EmptyDirVolumeSource", &["medium", "sizeLimit"]),
    ("HostPathVolumeSource", &["path", "type"]),
    (
        "PodSecurityContext",
        &[
            "seLinuxOptions",
            "windowsOptions",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "supplementalGroups",
            "supplementalGroupsPolicy",
            "fsGroup",
            "fsGroupChangePolicy",
            "sysctls",
            "seccompProfile",
            "appArmorProfile",
            "seLinuxChangePolicy",
        ],
    ),
    (
        "SecurityContext",
        &[
            "capabilities",
            "privileged",
            "seLinuxOptions",
            "windowsOptions",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "procMount",
            "seccompProfile",
            "appArmorProfile",
        ],
    ),
    ("SeccompProfile", &["type", "localhostProfile"]),
    ("Capabilities", &["add", "drop"]),
    ("EnvVar", &["name", "value", "valueFrom"]),
    (
        "EnvVarSource",
        &[
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
            "fileKeyRef",
        ],
    ),
    ("ObjectFieldSelector", &["apiVersion", "fieldPath"]),
    (
        "ContainerPort",
        &["name", "hostPort", "containerPort", "protocol", "hostIP"],
    ),
    ("ResourceRequirements", &["limits", "requests", "claims"]),
    (
        "VolumeMount",
        &[
            "name",
            "readOnly",
            "recursiveReadOnly",
            "mountPath",
            "subPath",
            "mountPropagation",
            "subPathExpr",
        ],
    ),
    (
        "Probe",
        &[
            "exec",
            "httpGet",
            "tcpSocket",
            "grpc",
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
            "terminationGracePeriodSeconds",
        ],
    ),
    ("ExecAction", &["command"]),
    (
        "HttpGetAction",
        &["path", "port", "host", "scheme", "httpHeaders"],
    ),
    ("HttpHeader", &["name", "value"]),
    ("TcpSocketAction", &["port", "host"]),
    ("Lifecycle", &["postStart", "preStop", "stopSignal"]),
    (
        "LifecycleHandler",
        &["exec", "httpGet", "tcpSocket", "sleep"],
    ),
    ("SleepAction", &["seconds"]),
    ("PodDnsConfig", &["nameservers", "searches", "options"]),
    ("PodDnsConfigOption", &["name", "value"]),
    ("HostAlias", &["ip", "hostnames"]),
    ("PodOs", &["name"]),
    ("ContainerRestartRule", &["action", "exitCodes"]),
    ("ContainerRestartRuleOnExitCodes", &["operator", "values"]),
];

/// Why a Kubernetes field is refused, where a hint helps the user more than the bare refusal.
pub const HINTS: &[(&str, &str, &str)] = &[
    (
        "Pod",
        "status",
        "status is reported by podsup, not read from a manifest: remove it",
    ),
    (
        "ObjectMeta",
        "generateName",
        "a static pod needs a fixed name: use metadata.name",
    ),
    ("ObjectMeta", "uid", "podsup assigns the pod UID"),
    ("ObjectMeta", "ownerReferences", "a static pod has no owner"),
    ("ObjectMeta", "finalizers", "a static pod has no finalizers"),
    (
        "PodSpec",
        "nodeSelector",
        "podsup runs every pod on this machine: remove it or put the pod in a file for a cluster",
    ),
    (
        "PodSpec",
        "affinity",
        "podsup runs every pod on this machine: scheduling fields do not apply",
    ),
    (
        "PodSpec",
        "tolerations",
        "podsup runs every pod on this machine: scheduling fields do not apply",
    ),
    (
        "PodSpec",
        "nodeName",
        "podsup runs every pod on this machine",
    ),
    (
        "PodSpec",
        "serviceAccountName",
        "static pods cannot use service accounts (as with a kubelet)",
    ),
    (
        "PodSpec",
        "serviceAccount",
        "static pods cannot use service accounts (as with a kubelet)",
    ),
    (
        "PodSpec",
        "imagePullSecrets",
        "static pods cannot use secrets; import the image with `podsup image import`",
    ),
    (
        "PodSpec",
        "ephemeralContainers",
        "use `podsup exec` to debug a running pod",
    ),
    (
        "Container",
        "envFrom",
        "static pods cannot use ConfigMaps or Secrets: set env values, or mount a hostPath file",
    ),
    (
        "Volume",
        "configMap",
        "static pods cannot use ConfigMaps (as with a kubelet): use a hostPath volume",
    ),
    (
        "Volume",
        "secret",
        "static pods cannot use Secrets (as with a kubelet): use a hostPath volume with mode 0600 files",
    ),
    (
        "Volume",
        "persistentVolumeClaim",
        "there is no cluster storage: use a hostPath volume",
    ),
    (
        "Volume",
        "projected",
        "static pods cannot use ConfigMaps, Secrets or tokens: use a hostPath volume",
    ),
    (
        "Volume",
        "downwardAPI",
        "use env with valueFrom.fieldRef instead",
    ),
    (
        "EnvVarSource",
        "configMapKeyRef",
        "static pods cannot use ConfigMaps: set the value directly",
    ),
    (
        "EnvVarSource",
        "secretKeyRef",
        "static pods cannot use Secrets: set the value directly or read a hostPath file",
    ),
    ("Probe", "grpc", "use an exec, httpGet or tcpSocket probe"),
    (
        "LifecycleHandler",
        "tcpSocket",
        "Kubernetes does not run tcpSocket hooks either: use exec, httpGet or sleep",
    ),
];

/// Kubernetes' fields of serde struct `owner`, if podsup models it.
pub fn k8s_fields(owner: &str) -> Option<&'static [&'static str]> {
    K8S_FIELDS
        .iter()
        .find(|(n, _)| *n == owner)
        .map(|(_, f)| *f)
}

pub fn hint(owner: &str, field: &str) -> Option<&'static str> {
    HINTS
        .iter()
        .find(|(o, f, _)| *o == owner && *f == field)
        .map(|(_, _, h)| *h)
}

/// The message for an unknown key `field` in struct `owner` whose serde fields are `expected`.
pub fn unknown_field_message(owner: &str, field: &str, expected: &[&str]) -> String {
    let k8s = k8s_fields(owner).unwrap_or(&[]);
    if k8s.contains(&field) {
        return match hint(owner, field) {
            Some(h) => format!("field {field:?} is not supported by podsup: {h}"),
            None => format!("field {field:?} is not supported by podsup"),
        };
    }
    let mut msg = format!("unknown field {field:?}");
    if let Some(best) = closest(field, expected.iter().chain(k8s.iter()).copied()) {
        msg.push_str(&format!(" (did you mean {best:?}?)"));
    }
    msg
}

/// The candidate closest to `word` by edit distance (case-insensitive), if close enough.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let limit = (word.len() / 3).max(1);
    candidates
        .map(|c| (edit_distance(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let fields = ["name", "image", "imagePullPolicy", "command"];
        assert_eq!(closest("imagee", fields.iter().copied()), Some("image"));
        assert_eq!(closest("comand", fields.iter().copied()), Some("command"));
        assert_eq!(closest("Image", fields.iter().copied()), Some("image"));
        assert_eq!(closest("xyz", fields.iter().copied()), None);
    }

    #[test]
    fn tells_unsupported_from_unknown() {
        assert_eq!(
            unknown_field_message("Volume", "configMap", &["name"]),
            "field \"configMap\" is not supported by podsup: static pods cannot use ConfigMaps (as with a kubelet): use a hostPath volume"
        );
        assert_eq!(
            unknown_field_message("Container", "imagee", &["name", "image"]),
            "unknown field \"imagee\" (did you mean \"image\"?)"
        );
        assert_eq!(
            unknown_field_message("Container", "resizePolicy", &["name", "image"]),
            "field \"resizePolicy\" is not supported by podsup"
        );
    }

    #[test]
    fn every_hint_names_a_kubernetes_field() {
        for (owner, field, _) in HINTS {
            assert!(
                k8s_fields(owner).is_some_and(|f| f.contains(field)),
                "{owner}.{field}"
            );
        }
    }
}

/// The supported-fields table of docs/manifests.md, generated from the model and the tables
/// above; a test keeps the document equal to it.
#[cfg(test)]
mod doc_table {
    use super::*;
    use crate::model::*;
    use serde::Deserialize;
    use serde::de::{self, Visitor};
    use std::cell::Cell;

    /// A deserializer that only records which struct serde asked for and its fields.
    struct Capture<'a>(&'a Cell<Option<(&'static str, &'static [&'static str])>>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    impl<'de> de::Deserializer<'de> for Capture<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(Some((name, fields)));
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<'de, T: Deserialize<'de>>() -> (&'static str, &'static [&'static str]) {
        let cell = Cell::new(None);
        let _ = T::deserialize(Capture(&cell));
        cell.get().expect("a struct")
    }

    fn structs() -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            fields_of::<Pod>(),
            fields_of::<ObjectMeta>(),
            fields_of::<PodSpec>(),
            fields_of::<Container>(),
            fields_of::<Volume>(),
            fields_of::<EmptyDirVolumeSource>(),
            fields_of::<HostPathVolumeSource>(),
            fields_of::<PodSecurityContext>(),
            fields_of::<SecurityContext>(),
            fields_of::<SeccompProfile>(),
            fields_of::<Capabilities>(),
            fields_of::<EnvVar>(),
            fields_of::<EnvVarSource>(),
            fields_of::<ObjectFieldSelector>(),
            fields_of::<ContainerPort>(),
            fields_of::<ResourceRequirements>(),
            fields_of::<VolumeMount>(),
            fields_of::<Probe>(),
            fields_of::<ExecAction>(),
            fields_of::<HttpGetAction>(),
            fields_of::<HttpHeader>(),
            fields_of::<TcpSocketAction>(),
            fields_of::<Lifecycle>(),
            fields_of::<LifecycleHandler>(),
            fields_of::<SleepAction>(),
            fields_of::<PodDnsConfig>(),
            fields_of::<PodDnsConfigOption>(),
            fields_of::<HostAlias>(),
            fields_of::<PodOs>(),
            fields_of::<ContainerRestartRule>(),
            fields_of::<ContainerRestartRuleOnExitCodes>(),
        ]
    }

    pub fn table() -> String {
        let mut out = String::new();
        for (name, supported) in structs() {
            out.push_str(&format!(
                "\n### {name}\n\n| field | podsup |\n| --- | --- |\n"
            ));
            let k8s =
                k8s_fields(name).unwrap_or_else(|| panic!("no Kubernetes field list for {name}"));
            for f in k8s {
                let status = if supported.contains(f) {
                    "supported".to_string()
                } else {
                    match hint(name, f) {
                        Some(h) => format!("refused: {h}"),
                        None => "refused: not supported by podsup".to_string(),
                    }
                };
                out.push_str(&format!("| `{f}` | {status} |\n"));
            }
        }
        out
    }

    #[test]
    fn every_model_field_is_a_kubernetes_field() {
        for (name, supported) in structs() {
            let k8s =
                k8s_fields(name).unwrap_or_else(|| panic!("no Kubernetes field list for {name}"));
            for f in supported {
                assert!(k8s.contains(f), "{name}.{f} is not in Kubernetes' list");
            }
        }
    }

    const BEGIN: &str =
        "<!-- fields:begin (generated: PODSUP_BLESS=1 cargo test --lib doc_table) -->";
    const END: &str = "<!-- fields:end -->";

    #[test]
    fn docs_manifests_md_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/manifests.md");
        let doc = std::fs::read_to_string(path).expect("docs/manifests.md");
        let (head, rest) = doc
            .split_once(BEGIN)
            .expect("begin marker in docs/manifests.md");
        let (current, tail) = rest
            .split_once(END)
            .expect("end marker in docs/manifests.md");
        let want = table();
        if std::env::var_os("PODSUP_BLESS").is_some() {
            std::fs::write(path, format!("{head}{BEGIN}\n{want}\n{END}{tail}")).unwrap();
            return;
        }
        assert_eq!(
            current.trim(),
            want.trim(),
            "docs/manifests.md is out of date: run PODSUP_BLESS=1 cargo test --lib doc_table"
        );
    }
}
