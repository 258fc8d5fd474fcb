//! The deployment examples (`examples/kubernetes/`, `examples/compose/`, and the config of
//! `examples/jobs/`). Neither Docker nor a
//! cluster runs where zoo is developed, so these files are checked statically: every YAML file
//! parses, each shipped `zoo.toml` passes the real `zoo check`, and the numbers that must agree
//! across files do (probe and scrape ports against `admin`, the Service against `listen`, the
//! platform's kill deadline against `shutdown_delay + grace`, mount paths against the image's
//! `--config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use crate::util;

const CHECK_DEADLINE: Duration = Duration::from_secs(10);

fn example_dir(name: &str) -> PathBuf {
    util::repo_root().join("examples").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The YAML documents in `path`, failing the test with the parser's position on a syntax error.
fn load_yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

/// The single document in `path`.
fn load_one(path: &Path) -> Yaml {
    let mut docs = load_yaml(path);
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.remove(0)
}

/// The node at `keys` under `node`; a key that is a number indexes a list. Fails the test with
/// the path when something on the way is missing, so a renamed key is reported as such.
fn at<'a>(node: &'a Yaml, keys: &[&str]) -> &'a Yaml {
    let mut current = node;
    for (depth, key) in keys.iter().enumerate() {
        current = match key.parse::<usize>() {
            Ok(index) => &current[index],
            Err(_) => &current[*key],
        };
        assert!(
            !current.is_badvalue(),
            "missing `{}` in {node:?}",
            keys[..=depth].join(".")
        );
    }
    current
}

fn str_at<'a>(node: &'a Yaml, keys: &[&str]) -> &'a str {
    at(node, keys)
        .as_str()
        .unwrap_or_else(|| panic!("`{}` is not a string", keys.join(".")))
}

fn int_at(node: &Yaml, keys: &[&str]) -> i64 {
    at(node, keys)
        .as_i64()
        .unwrap_or_else(|| panic!("`{}` is not an integer", keys.join(".")))
}

/// What the deployment files must agree with, read from a shipped `zoo.toml`.
struct ZooConfig {
    path: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
    shutdown_delay: Duration,
    grace: Duration,
}

impl ZooConfig {
    /// Reads the file with zoo's own parser, the environment empty (the images set no `PORT`,
    /// so every `${VAR:-default}` takes its default).
    fn read(dir: &Path) -> ZooConfig {
        let path = dir.join("zoo.toml");
        let config = zoo::config::parse(&read(&path), &path, &|_| None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ZooConfig {
            listen: config.listen[0],
            admin: config
                .admin
                .unwrap_or_else(|| panic!("{}: no `admin` listener", path.display())),
            shutdown_delay: config.shutdown_delay,
            grace: config.grace,
            path,
        }
    }

    /// The longest zoo may take from SIGTERM to exit on its own.
    fn shutdown_budget(&self) -> Duration {
        self.shutdown_delay + self.grace
    }
}

/// Runs the real `zoo check` on the example's `zoo.toml`: it must be valid, and zoo must resolve
/// `listen` to the address the other checks use.
fn assert_passes_zoo_check(example: &str) {
    let config = ZooConfig::read(&example_dir(example));
    let cwd = tempfile::tempdir().expect("temp dir");
    let path = config.path.to_str().unwrap();
    let run = util::run_to_end(cwd.path(), &["check", "--config", path], CHECK_DEADLINE);
    assert_eq!(run.code(), Some(0), "zoo check {path}\n{}", run.output);
    assert!(
        run.stdout.lines().any(|line| line
            .split_whitespace()
            .eq(["listen", config.listen.to_string().as_str()])),
        "zoo check should print `listen  {}`:\n{}",
        config.listen,
        run.output
    );
}

/// The path the demo image's ENTRYPOINT passes to `--config`.
fn image_config_path() -> String {
    let dockerfile = read(&example_dir("zoo").join("Dockerfile"));
    let entrypoint = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENTRYPOINT "))
        .expect("examples/zoo/Dockerfile has an ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec form");
    let flag = argv.iter().position(|arg| arg == "--config").unwrap();
    argv[flag + 1].clone()
}

fn deployment_template(deployment: &Yaml) -> &Yaml {
    at(deployment, &["spec", "template"])
}

/// The Deployment's one container.
fn kubernetes_container(deployment: &Yaml) -> &Yaml {
    let containers = at(deployment, &["spec", "template", "spec", "containers"])
        .as_vec()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "one container: zoo");
    &containers[0]
}

/// A port as Kubernetes allows it: a number, or the name of one of the container's ports.
fn resolve_port(container: &Yaml, port: &Yaml) -> u16 {
    let number = match port {
        Yaml::Integer(number) => *number,
        Yaml::String(name) => container["ports"]
            .as_vec()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| int_at(p, &["containerPort"]))
            .unwrap_or_else(|| panic!("no container port named `{name}`")),
        other => panic!("port {other:?} is neither a number nor a name"),
    };
    u16::try_from(number).unwrap()
}

#[test]
fn examples_yaml_files_all_parse() {
    for example in ["kubernetes", "compose"] {
        let dir = example_dir(example);
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                let docs = load_yaml(&path);
                assert!(
                    docs.iter().all(|doc| doc.as_hash().is_some()),
                    "{}: every document should be a mapping",
                    path.display()
                );
                parsed += 1;
            }
        }
        assert!(parsed > 0, "no YAML files in {}", dir.display());
    }
}

#[test]
fn kubernetes_example_config_passes_zoo_check() {
    assert_passes_zoo_check("kubernetes");
}

#[test]
fn compose_example_config_passes_zoo_check() {
    assert_passes_zoo_check("compose");
}

#[test]
fn spa_example_config_passes_zoo_check() {
    assert_passes_zoo_check("spa");
}

#[test]
fn kubernetes_example_probes_and_scrape_use_the_admin_listener() {
    let dir = example_dir("kubernetes");
    let config = ZooConfig::read(&dir);
    // The kubelet and Prometheus connect to the pod IP, which a loopback listener never sees.
    assert!(
        config.admin.ip().is_unspecified(),
        "admin {} must listen on every interface for the kubelet's probes",
        config.admin
    );
    let deployment = load_one(&dir.join("deployment.yaml"));
    let container = kubernetes_container(&deployment);
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = at(container, &[probe, "httpGet"]);
        assert_eq!(str_at(get, &["path"]), path, "{probe} path");
        assert_eq!(
            resolve_port(container, at(get, &["port"])),
            config.admin.port(),
            "{probe} port should be zoo.toml's admin port"
        );
    }
    let annotations = at(
        deployment_template(&deployment),
        &["metadata", "annotations"],
    );
    assert_eq!(str_at(annotations, &["prometheus.io/scrape"]), "true");
    assert_eq!(
        str_at(annotations, &["prometheus.io/port"]),
        config.admin.port().to_string()
    );
    assert_eq!(str_at(annotations, &["prometheus.io/path"]), "/metrics");
}

#[test]
fn jobs_example_config_passes_zoo_check() {
    assert_passes_zoo_check("jobs");
}

#[test]
fn kubernetes_example_grace_period_covers_zoo_shutdown() {
    let dir = example_dir("kubernetes");
    let config = ZooConfig::read(&dir);
    let deployment = load_one(&dir.join("deployment.yaml"));
    let period = int_at(
        deployment_template(&deployment),
        &["spec", "terminationGracePeriodSeconds"],
    );
    let period = Duration::from_secs(u64::try_from(period).unwrap());
    // The kubelet's SIGKILL must not land before zoo's own: shutdown_delay, then grace.
    assert!(
        period >= config.shutdown_budget(),
        "terminationGracePeriodSeconds {period:?} < shutdown_delay {:?} + grace {:?}",
        config.shutdown_delay,
        config.grace
    );
    assert!(
        config.shutdown_delay > Duration::ZERO,
        "the Kubernetes example should set shutdown_delay, for the endpoints-removal race"
    );
}

#[test]
fn kubernetes_example_service_targets_the_listen_port() {
    let dir = example_dir("kubernetes");
    let config = ZooConfig::read(&dir);
    let deployment = load_one(&dir.join("deployment.yaml"));
    let container = kubernetes_container(&deployment);
    let service = load_one(&dir.join("service.yaml"));
    assert_eq!(str_at(&service, &["kind"]), "Service");
    let port = at(&service, &["spec", "ports", "0"]);
    assert_eq!(int_at(port, &["port"]), 80);
    assert_eq!(
        resolve_port(container, at(port, &["targetPort"])),
        config.listen.port(),
        "the Service should target zoo.toml's listen port"
    );
    let declared: Vec<i64> = at(container, &["ports"])
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| int_at(p, &["containerPort"]))
        .collect();
    for port in [config.listen.port(), config.admin.port()] {
        assert!(
            declared.contains(&i64::from(port)),
            "containerPort {port} not declared: {declared:?}"
        );
    }
    // The Service must select the Deployment's pods.
    let pod_labels = at(deployment_template(&deployment), &["metadata", "labels"]);
    for (key, value) in at(&service, &["spec", "selector"]).as_hash().unwrap() {
        assert_eq!(
            &pod_labels[key.as_str().unwrap()],
            value,
            "selector {key:?}"
        );
    }
}

#[test]
fn kubernetes_example_mounts_its_zoo_toml_where_the_image_reads_it() {
    let dir = example_dir("kubernetes");
    let kustomization = load_one(&dir.join("kustomization.yaml"));
    let generator = at(&kustomization, &["configMapGenerator", "0"]);
    assert_eq!(str_at(generator, &["files", "0"]), "zoo.toml");
    let resources: Vec<&str> = at(&kustomization, &["resources"])
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(resources, ["deployment.yaml", "service.yaml"]);

    let deployment = load_one(&dir.join("deployment.yaml"));
    let volume = at(deployment_template(&deployment), &["spec", "volumes", "0"]);
    assert_eq!(
        str_at(volume, &["configMap", "name"]),
        str_at(generator, &["name"]),
        "the volume should use the generated ConfigMap"
    );
    let mount = at(kubernetes_container(&deployment), &["volumeMounts", "0"]);
    assert_eq!(str_at(mount, &["name"]), str_at(volume, &["name"]));
    assert_eq!(str_at(mount, &["subPath"]), "zoo.toml");
    assert_eq!(str_at(mount, &["mountPath"]), image_config_path());
}

#[test]
fn compose_example_healthcheck_hits_the_admin_readyz() {
    let dir = example_dir("compose");
    let config = ZooConfig::read(&dir);
    let compose = load_one(&dir.join("compose.yaml"));
    let test = at(&compose, &["services", "zoo", "healthcheck", "test"]);
    let command: Vec<&str> = test
        .as_vec()
        .expect("healthcheck.test in exec form")
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(command[0], "CMD");
    // `zoo healthcheck` asks the same /readyz over the control socket.
    if command[1..] == ["zoo", "healthcheck"] {
        return;
    }
    let script = command.join(" ");
    let url = script
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(['\'', '"', ' ']).next())
        .unwrap_or_else(|| panic!("no http:// URL in the healthcheck: {script}"));
    let (host_port, path) = url.split_at(url.find('/').unwrap_or(url.len()));
    let target: SocketAddr = host_port.parse().unwrap();
    assert_eq!(path, "/readyz");
    assert_eq!(
        target.port(),
        config.admin.port(),
        "healthcheck port should be zoo.toml's admin port"
    );
    // The healthcheck runs inside the container: loopback reaches a loopback or any-address
    // admin listener, nothing else does.
    assert!(target.ip().is_loopback());
    assert!(config.admin.ip().is_loopback() || config.admin.ip().is_unspecified());
}

#[test]
fn compose_example_stop_grace_period_covers_zoo_shutdown() {
    let dir = example_dir("compose");
    let config = ZooConfig::read(&dir);
    let compose = load_one(&dir.join("compose.yaml"));
    // Compose durations are written like zoo's.
    let period =
        zoo::config::parse_duration(str_at(&compose, &["services", "zoo", "stop_grace_period"]))
            .unwrap_or_else(|e| panic!("stop_grace_period: {e}"));
    // Docker's SIGKILL must not land before zoo's own.
    assert!(
        period >= config.shutdown_budget(),
        "stop_grace_period {period:?} < shutdown_delay {:?} + grace {:?}",
        config.shutdown_delay,
        config.grace
    );
}

#[test]
fn compose_example_builds_the_demo_and_mounts_its_zoo_toml() {
    let dir = example_dir("compose");
    let compose = load_one(&dir.join("compose.yaml"));
    let service = at(&compose, &["services", "zoo"]);
    let context = dir.join(str_at(service, &["build", "context"]));
    assert_eq!(
        context.canonicalize().unwrap(),
        util::repo_root().canonicalize().unwrap(),
        "the Dockerfile copies Cargo.toml and src/: the context is the repository root"
    );
    let dockerfile = context.join(str_at(service, &["build", "dockerfile"]));
    assert!(dockerfile.is_file(), "{} missing", dockerfile.display());
    assert_eq!(str_at(service, &["ports", "0"]), "8000:8000");

    let config = ZooConfig::read(&dir);
    assert_eq!(config.listen.port(), 8000);
    let volume = str_at(service, &["volumes", "0"]);
    let parts: Vec<&str> = volume.split(':').collect();
    assert_eq!(
        dir.join(parts[0]).canonicalize().unwrap(),
        config.path.canonicalize().unwrap()
    );
    assert_eq!(parts[1], image_config_path());
}
