//! `podsup validate` on bad manifests: exit code 1 and the exact file:line:col messages.

mod common;

use std::path::Path;

use common::podsup;

/// Each file under tests/manifests/bad and every line `podsup validate` must print for it
/// (`{f}` stands for the file's path).
const CASES: &[(&str, &[&str])] = &[
    (
        "alias-bomb.yaml",
        &["{f}:6:8: invalid YAML: document expands to more than 200000 nodes (an alias bomb?)"],
    ),
    (
        "bad-host-path.yaml",
        &[
            "{f}:12:13: spec.volumes[0].hostPath.path: Invalid value: \"var/lib/data\": must be an absolute path",
            "{f}:13:13: spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"DirectoryOrCreate\", \"Directory\", \"FileOrCreate\", \"File\", \"Socket\", \"CharDevice\", \"BlockDevice\"",
        ],
    ),
    (
        "bad-label-value.yaml",
        &[
            "{f}:6:10: metadata.labels[app]: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters",
        ],
    ),
    (
        "bad-pod-name.yaml",
        &[
            "{f}:4:9: metadata.name: Invalid value: \"Web_Server\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ],
    ),
    (
        "bad-protocol.yaml",
        &[
            "{f}:11:17: spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        ],
    ),
    (
        "bad-quantity.yaml",
        &[
            "{f}:11:17: spec.containers[0].resources.limits[memory]: invalid quantity \"12 MB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ],
    ),
    (
        "bad-restart-policy.yaml",
        &[
            "{f}:9:18: spec.restartPolicy: Unsupported value: \"always\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ],
    ),
    (
        "binary-garbage.yaml",
        &["{f}:1:1: binary data (a NUL byte): a manifest must be YAML or JSON text"],
    ),
    (
        "dns-none-without-config.yaml",
        &[
            "{f}:6:3: spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ],
    ),
    (
        "duplicate-container.yaml",
        &["{f}:9:11: spec.containers[1].name: Duplicate value: \"app\""],
    ),
    (
        "duplicate-host-port.yaml",
        &[
            "{f}:16:17: spec.containers[1].ports[0].hostPort: Duplicate value: \"8080/TCP\" (also used by spec.containers[0].ports[0].hostPort)",
        ],
    ),
    (
        "duplicate-init-container.yaml",
        &["{f}:7:11: spec.containers[0].name: Duplicate value: \"app\""],
    ),
    (
        "duplicate-key.yaml",
        &["{f}:10:3: invalid YAML: duplicate key \"containers\" (first at 6:3)"],
    ),
    (
        "empty.yaml",
        &["{f}: no Pod in this file (it is empty or has only comments)"],
    ),
    (
        "env-secret.yaml",
        &[
            "{f}:12:9: spec.containers[0].env[0].valueFrom: field \"secretKeyRef\" is not supported by podsup: static pods cannot use Secrets: set the value directly or read a hostPath file",
        ],
    ),
    (
        "env-value-bool.yaml",
        &[
            "{f}:11:14: spec.containers[0].env[0].value: expected a string, got boolean true (quote it if you mean the text)",
        ],
    ),
    (
        "invalid-utf8.yaml",
        &["{f}:4:12: invalid UTF-8: a manifest must be UTF-8 text"],
    ),
    (
        "invalid-yaml.yaml",
        &["{f}:8:12: invalid YAML: unclosed bracket '['"],
    ),
    (
        "missing-image.yaml",
        &["{f}:7:5: spec.containers[0].image: Required value"],
    ),
    (
        "mount-undeclared-volume.yaml",
        &["{f}:10:13: spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
    ),
    (
        "no-containers.yaml",
        &["{f}:6:3: spec.containers: Required value"],
    ),
    (
        "non-pod-kind.yaml",
        &[
            "{f}:2:7: kind: kind \"Deployment\" is not supported: podsup runs Pods only; put the pod template's metadata and spec in a Pod",
        ],
    ),
    (
        "only-comments.yaml",
        &["{f}: no Pod in this file (it is empty or has only comments)"],
    ),
    (
        "pod-limit-below-container.yaml",
        &[
            "{f}:12:21: spec.containers[0].resources.limits[cpu]: Invalid value: \"1\": must be less than or equal to pod limit of 500m",
        ],
    ),
    (
        "port-out-of-range.yaml",
        &[
            "{f}:10:22: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ],
    ),
    (
        "probe-without-handler.yaml",
        &[
            "{f}:10:7: spec.containers[0].readinessProbe: Required value: must specify a handler type (exec, httpGet or tcpSocket)",
        ],
    ),
    (
        "request-over-limit.yaml",
        &[
            "{f}:11:23: spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ],
    ),
    (
        "same-pod-twice.yaml",
        &["{f}:13:9: metadata.name: pod default/web is declared twice in this file (first at 4:9)"],
    ),
    (
        "status-field.yaml",
        &[
            "{f}:5:1: field \"status\" is not supported by podsup: status is reported by podsup, not read from a manifest: remove it",
        ],
    ),
    (
        "stop-signal-without-os.yaml",
        &[
            "{f}:10:19: spec.containers[0].lifecycle.stopSignal: Forbidden: may not be set when spec.os.name is not set (add `os: {name: linux}` to the pod spec, as Kubernetes requires)",
        ],
    ),
    (
        "tab-indent.yaml",
        &[
            "{f}:4:2: invalid YAML: tabs disallowed within this context (block indentation) (YAML indentation must use spaces, not tabs)",
        ],
    ),
    (
        "liveness-success-threshold.yaml",
        &[
            "{f}:11:25: spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        ],
    ),
    (
        "probe-grpc.yaml",
        &[
            "{f}:10:7: spec.containers[0].readinessProbe: field \"grpc\" is not supported by podsup: use an exec, httpGet or tcpSocket probe",
        ],
    ),
    (
        "probe-host-name.yaml",
        &[
            "{f}:10:33: spec.containers[0].livenessProbe.httpGet.host: Unsupported value: \"example.org\": not supported by podsup (use an IP address or localhost; the default is the pod's address)",
        ],
    ),
    (
        "probe-https.yaml",
        &[
            "{f}:10:37: spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: \"HTTPS\": not supported by podsup (use HTTP)",
        ],
    ),
    (
        "two-probe-handlers.yaml",
        &[
            "{f}:10:7: spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type",
        ],
    ),
    (
        "typo-field.yaml",
        &["{f}:9:5: spec.containers[0]: unknown field \"imagee\" (did you mean \"image\"?)"],
    ),
    (
        "unknown-capability.yaml",
        &[
            "{f}:11:15: spec.containers[0].securityContext.capabilities.add[0]: Unsupported value: \"NET_ADMN\": not a Linux capability (e.g. \"NET_ADMIN\", \"CAP_SYS_TIME\", or \"ALL\")",
        ],
    ),
    (
        "unsupported-configmap.yaml",
        &[
            "{f}:11:5: spec.volumes[0]: field \"configMap\" is not supported by podsup: static pods cannot use ConfigMaps (as with a kubelet): use a hostPath volume",
        ],
    ),
    (
        "unsupported-node-selector.yaml",
        &[
            "{f}:9:3: spec: field \"nodeSelector\" is not supported by podsup: podsup runs every pod on this machine: remove it or put the pod in a file for a cluster",
        ],
    ),
    (
        "wrong-type-command.yaml",
        &["{f}:9:14: spec.containers[0].command: expected a list, got string \"sleep 10\""],
    ),
    (
        "wrong-type.json",
        &[
            "{f}:2:69: spec.containers[0].tty: expected a boolean (true or false), got string \"yes\"",
        ],
    ),
];

fn validate(path: &Path) -> (i32, String, String) {
    let out = podsup()
        .arg("validate")
        .arg(path)
        .output()
        .expect("run podsup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_bad_manifest_is_refused_with_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    let mut seen = 0;
    let mut failures = Vec::new();
    for (file, want) in CASES {
        let path = dir.join(file);
        let (code, _, stderr) = validate(&path);
        let want: Vec<String> = want
            .iter()
            .map(|l| l.replace("{f}", &path.display().to_string()))
            .collect();
        let got: Vec<&str> = stderr.lines().collect();
        if code != 1 || got != want {
            failures.push(format!(
                "{file}: exit {code}\n  got:  {got:?}\n  want: {want:?}"
            ));
        }
        seen += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every file in the corpus has a case, so none is left unchecked.
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files, seen,
        "a file under tests/manifests/bad has no expected output"
    );
    assert!(seen >= 30);
}

#[test]
fn every_example_pod_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pods");
    let (code, stdout, stderr) = validate(&dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("pods/hello.yaml: ok (default/hello)"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
}

#[test]
fn a_huge_file_is_refused_before_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.yaml");
    let mut text =
        String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: huge\n  annotations:\n");
    while text.len() < 5 * 1024 * 1024 {
        text.push_str(&format!("    k{}: \"{}\"\n", text.len(), "x".repeat(100)));
    }
    std::fs::write(&path, &text).unwrap();
    let (code, _, stderr) = validate(&path);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        format!(
            "{}: file is {} bytes, more than the 1048576 bytes podsup reads from a manifest",
            path.display(),
            text.len()
        )
    );
}

#[test]
fn deep_nesting_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("deep.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {}\n",
            "[".repeat(100_000)
        ),
    )
    .unwrap();
    let (code, _, stderr) = validate(&path);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("invalid YAML"), "{stderr}");
}

#[test]
fn the_same_pod_in_two_files_reports_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: twin\nspec:\n  containers:\n  - name: app\n    image: busybox\n";
    std::fs::write(tmp.path().join("a.yaml"), pod).unwrap();
    std::fs::write(tmp.path().join("b.yaml"), pod).unwrap();
    std::fs::write(tmp.path().join(".b.yaml.swp"), "not yaml: [").unwrap();
    std::fs::write(tmp.path().join("b.yaml~"), "not yaml: [").unwrap();
    let (code, stdout, stderr) = validate(tmp.path());
    assert_eq!(code, 1);
    assert_eq!(
        stdout.trim(),
        format!("{}: ok (default/twin)", tmp.path().join("a.yaml").display())
    );
    assert_eq!(
        stderr.trim(),
        format!(
            "{}:4:9: metadata.name: pod default/twin is already declared in {}, which wins (the first file by name)",
            tmp.path().join("b.yaml").display(),
            tmp.path().join("a.yaml").display()
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = podsup().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = podsup().arg("no-such-verb").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
