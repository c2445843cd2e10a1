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
