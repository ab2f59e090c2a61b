//! User code sees nothing of the host but the toolchain: no network, no host files, no
//! executor environment, no root, and no other job.

mod common;

use std::{
    io::ErrorKind,
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use common::TestJob;

/// A file only the host has, readable by the executor's user and by everyone else.
fn host_file(dir: &Path, content: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("host-secret.txt");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[tokio::test]
async fn there_is_no_network_not_even_to_the_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let c = r#"#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) { puts("connected"); return 0; }
    printf("connect failed: %s\n", strerror(errno));
    return 0;
}
"#;
    let done = TestJob::source("c", c).args(&[&port]).execute().await;
    done.assert_succeeded();
    let said = done.entry("stdout.txt");
    assert!(said.starts_with("connect failed"), "{said}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the host's listener saw a connection"
    );

    let js = format!(
        "require('net').connect({port}, '127.0.0.1').on('connect', () => console.log('connected')).on('error', e => console.log('error', e.code));\n"
    );
    let done = TestJob::source("javascript", &js).execute().await;
    assert!(
        done.entry("stdout.txt").starts_with("error"),
        "{}",
        done.entry("stdout.txt")
    );
}

#[tokio::test]
async fn host_files_outside_the_toolchain_cannot_be_read() {
    let in_tmp = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let secrets = [
        host_file(in_tmp.path(), "secret"),
        host_file(elsewhere.path(), "secret"),
    ];
    let c = r#"#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "r");
        printf("%s: %s\n", argv[i], f ? "READ" : "no");
    }
    return 0;
}
"#;
    let job_dir = tempfile::tempdir().unwrap();
    let logs = job_dir.path().join("logs/stdin");
    let mut paths: Vec<String> = secrets.iter().map(|p| p.display().to_string()).collect();
    paths.extend(
        [
            "/etc/passwd",
            "/etc/shadow",
            "/root/.bashrc",
            "../logs/stdin",
            "/proc/1/root/etc/passwd",
        ]
        .map(String::from),
    );
    paths.push(logs.display().to_string());
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let done = TestJob::source("c", c)
        .args(&args)
        .execute_in(job_dir.path().to_owned())
        .await;
    done.assert_succeeded();
    let said = done.entry("stdout.txt");
    assert!(!said.contains("READ"), "{said}");
    assert_eq!(said.lines().count(), paths.len());
}

#[tokio::test]
async fn the_program_sees_only_its_own_environment_processes_and_writable_work_dir() {
    let c = r#"#include <stdio.h>
#include <dirent.h>
#include <ctype.h>
extern char **environ;
int main(void) {
    for (char **e = environ; *e; e++) printf("env %s\n", *e);
    int procs = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; (e = readdir(d));) procs += isdigit((unsigned char)e->d_name[0]) != 0;
    printf("processes %d\n", procs);
    printf("usr writable %d\n", fopen("/usr/x", "w") != NULL);
    printf("root writable %d\n", fopen("/x", "w") != NULL);
    printf("work writable %d\n", fopen("/work/x", "w") != NULL);
    printf("tmp writable %d\n", fopen("/tmp/x", "w") != NULL);
    printf("dev writable %d\n", fopen("/dev/x", "w") != NULL);
    printf("shm writable %d\n", fopen("/dev/shm/x", "w") != NULL);
    printf("null writable %d\n", fopen("/dev/null", "w") != NULL);
    return 0;
}
"#;
    let done = TestJob::source("c", c).execute().await;
    done.assert_succeeded();
    let said = done.entry("stdout.txt");
    let mut env: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("env "))
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    env.sort();
    assert_eq!(env, ["HOME", "LANG", "PATH", "PWD"], "{said}");
    assert!(
        said.contains("env HOME=/tmp\n")
            && said.contains("env PATH=/usr/local/bin:/usr/bin:/bin\n")
    );
    // sh (PID 1) and the program.
    assert!(said.contains("processes 2\n"), "{said}");
    for expected in [
        "usr writable 0",
        "root writable 0",
        "dev writable 0",
        "work writable 1",
        "tmp writable 1",
        "shm writable 1",
        "null writable 1",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
}

#[tokio::test]
async fn the_program_is_not_root_and_cannot_gain_privileges() {
    let c = r#"#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    gid_t groups[64];
    printf("uid %d gid %d groups %d\n", (int)getuid(), (int)getgid(), getgroups(64, groups));
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (fgets(line, sizeof line, f)) if (!strncmp(line, "CapEff", 6) || !strncmp(line, "Groups", 6)) fputs(line, stdout);
    printf("unshare user %d\n", unshare(CLONE_NEWUSER));
    return 0;
}
"#;
    let done = TestJob::source("c", c).execute().await;
    done.assert_succeeded();
    let said = done.entry("stdout.txt");
    let uid: u32 = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((200_000..250_000).contains(&uid), "{said}");
    assert!(
        said.contains(&format!("gid {uid} groups 0")),
        "no supplementary groups: {said}"
    );
    assert!(said.contains("CapEff:\t0000000000000000"), "{said}");
    assert!(said.contains("unshare user -1"), "{said}");
}

#[tokio::test]
async fn a_symlink_in_out_does_not_bring_a_host_file_into_the_zip() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_file(dir.path(), "TOP-SECRET-CONTENT");
    let c = r#"#define _DEFAULT_SOURCE
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("%d ", symlink(argv[1], "out/leak.txt"));
    printf("%d ", symlink("/", "out/root"));
    printf("%d ", symlink("../..", "out/up"));
    printf("%d\n", link(argv[1], "out/hard.txt"));
    FILE *f = fopen("out/fine.txt", "w"); fputs("fine", f); fclose(f);
    return 0;
}
"#;
    let done = TestJob::source("c", c)
        .args(&[&secret.display().to_string()])
        .execute()
        .await;
    done.assert_succeeded();
    assert_eq!(
        done.entry("stdout.txt"),
        "0 0 0 -1\n",
        "the links were made (the hard one cannot be)"
    );
    assert_eq!(
        done.names(),
        [
            "compile.txt",
            "out/fine.txt",
            "result.json",
            "stderr.txt",
            "stdout.txt"
        ]
    );
    assert!(
        done.zip
            .values()
            .all(|c| !String::from_utf8_lossy(c).contains("TOP-SECRET")),
        "the host file leaked"
    );
    let notes = done.result()["notes"].to_string();
    assert!(notes.contains("out/leak.txt is a symbolic link"), "{notes}");
}

#[tokio::test]
async fn two_jobs_cannot_reach_each_others_files() {
    let a_dir = tempfile::tempdir().unwrap();
    let a_secret = a_dir.path().join("fs/work/secret.txt");
    let a_stdout = a_dir.path().join("logs/stdout");
    let a = TestJob::source(
        "c",
        "#include <stdio.h>\n#include <unistd.h>\nint main(void) { FILE *f = fopen(\"secret.txt\", \"w\"); fputs(\"A's secret\", f); fclose(f); printf(\"%d\", (int)getuid()); fflush(stdout); sleep(3); return 0; }\n",
    );
    let a_run = tokio::spawn({
        let a_dir = a_dir.path().to_owned();
        async move { a.execute_in(a_dir).await }
    });
    // A has written its file once it has said its uid.
    while std::fs::metadata(&a_stdout).map_or(true, |m| m.len() == 0) {
        assert!(!a_run.is_finished(), "job A ended before writing its file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let b = TestJob::source(
        "c",
        "#include <stdio.h>\n#include <unistd.h>\nint main(int argc, char **argv) { printf(\"%d %s\", (int)getuid(), fopen(argv[1], \"r\") ? \"READ\" : \"no\"); return 0; }\n",
    )
    .args(&[&a_secret.display().to_string()]);
    let b_done = b.execute().await;
    b_done.assert_succeeded();
    let said = b_done.entry("stdout.txt");
    let (b_uid, b_read) = said.split_once(' ').unwrap();
    assert_eq!(b_read, "no", "B read A's file through its path");
    let b_uid: u32 = b_uid.parse().unwrap();

    // A's files are on its own disk allowance, which only A's executor thread sees: not even
    // the host finds them where A's job directory is.
    assert!(
        !a_secret.exists(),
        "A's file is on the host's disk, where anyone with its uid could read it"
    );
    let a_done = a_run.await.unwrap();
    a_done.assert_succeeded();
    assert_ne!(a_done.entry("stdout.txt").parse::<u32>().unwrap(), b_uid);
}

#[tokio::test]
async fn the_writable_memory_file_systems_are_capped() {
    // Many files below the file size limit, until the file system is full.
    let c = r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
static long fill(const char *dir) {
    static char block[64 * 1024];
    long total = 0;
    for (int i = 0; i < 100000; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s/f%d", dir, i);
        FILE *f = fopen(name, "w");
        if (!f) break;
        size_t n = fwrite(block, 1, sizeof block, f);
        int full = fclose(f) != 0 || n < sizeof block;
        total += n;
        if (full) break;
    }
    return total >> 20;
}
int main(void) {
    printf("tmp %ld MB\n", fill("/tmp"));
    printf("shm %ld MB\n", fill("/dev/shm"));
    return 0;
}
"#;
    // /tmp is on the job's disk allowance, /dev/shm takes a quarter of its memory limit; both
    // count against the memory limit, which must hold them and the program.
    let done = TestJob::source("c", c)
        .limits(|l| {
            l.memory_mb = 64;
            l.disk_mb = 24;
            l.output_kb = 128;
        })
        .execute()
        .await;
    done.assert_succeeded();
    let said = done.entry("stdout.txt");
    let megabytes: Vec<u64> = said
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert!((16..=24).contains(&megabytes[0]), "{said}");
    assert!((8..=16).contains(&megabytes[1]), "{said}");
}

#[tokio::test]
async fn shared_memory_counts_against_the_memory_limit() {
    // What escaped RLIMIT_DATA: 1 GiB of shared anonymous memory, every page touched.
    let c = r#"#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
int main(void) {
    size_t n = 1UL << 30;
    char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    puts("touched 1 GiB");
    return 0;
}
"#;
    let done = TestJob::source("c", c)
        .limits(|l| l.memory_mb = 64)
        .execute()
        .await;
    done.assert_failed(cola_wire::Reason::MemoryLimit);
    assert!(!done.entry("stdout.txt").contains("touched"));
}

#[tokio::test]
async fn a_job_cannot_fill_the_hosts_disk() {
    // 300 files of 1000 KB (each under the file size limit): 292 MB, far beyond the default
    // allowance of 64 MB, which lives in memory, not on the host's disk.
    let c = r#"#include <stdio.h>
int main(void) {
    static char block[1000 * 1024];
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.dat", i);
        FILE *f = fopen(name, "w");
        if (!f || fwrite(block, 1, sizeof block, f) < sizeof block || fclose(f) != 0) {
            printf("stopped at file %d\n", i);
            return 1;
        }
    }
    return 0;
}
"#;
    let job_dir = tempfile::tempdir().unwrap();
    let job = TestJob::source("c", c).limits(|l| {
        l.output_kb = 2048;
        l.memory_mb = 256;
    });
    let run = tokio::spawn({
        let job_dir = job_dir.path().to_owned();
        async move { job.execute_in(job_dir).await }
    });
    let mut most_on_host = 0;
    while !run.is_finished() {
        most_on_host = most_on_host.max(bytes_under(job_dir.path()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = run.await.unwrap();
    done.assert_failed(cola_wire::Reason::OutputLimit);
    let message = done.report.message.clone().unwrap();
    assert!(message.contains("disk allowance of 64 MB"), "{message}");
    let stopped: u32 = done
        .entry("stdout.txt")
        .trim()
        .strip_prefix("stopped at file ")
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=66).contains(&stopped), "stopped at file {stopped}");
    assert!(
        most_on_host < 1 << 20,
        "{most_on_host} bytes of the job's files on the host's disk"
    );
    // (The host disk's free space is not compared: anything else on the machine writing to it
    // would fail that check, while the files under the job directory are the job's alone.)
}

/// Bytes of the regular files under `dir` (links not followed), as the host sees them.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn the_sandbox_shows_only_the_toolchain_of_usr_and_no_host_path() {
    let c = r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    const char *paths[] = {"/usr/local", "/usr/local/bin", "/usr/local/etc", "/usr/etc", "/usr/src", "/usr/bin/gcc"};
    for (int i = 0; i < 6; i++) printf("%s %s\n", paths[i], access(paths[i], F_OK) == 0 ? "seen" : "absent");
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    return 0;
}
"#;
    let job_dir = tempfile::tempdir().unwrap();
    let done = TestJob::source("c", c)
        .execute_in(job_dir.path().to_owned())
        .await;
    done.assert_succeeded();
    assert_eq!(
        done.entry("stdout.txt"),
        "/usr/local absent\n/usr/local/bin absent\n/usr/local/etc absent\n/usr/etc absent\n/usr/src absent\n/usr/bin/gcc seen\n"
    );
    let mountinfo = done.entry("stderr.txt");
    let host_path = job_dir.path().display().to_string();
    assert!(
        !mountinfo.contains(&host_path),
        "the job directory's host path shows: {mountinfo}"
    );
    assert!(mountinfo.contains(" /work "), "{mountinfo}");
}

#[tokio::test]
async fn job_directories_may_sit_where_only_root_can_go() {
    use std::os::unix::fs::PermissionsExt;
    let private = tempfile::tempdir().unwrap();
    let job_dir = private.path().join("jobs/one");
    std::fs::create_dir_all(&job_dir).unwrap();
    for dir in [
        private.path().to_owned(),
        private.path().join("jobs"),
        job_dir.clone(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let done = TestJob::source(
        "c",
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .execute_in(job_dir.clone())
    .await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "hello\n");
    let mode = std::fs::metadata(&job_dir).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "the job directory stays private");
}

#[tokio::test]
async fn the_sandbox_init_is_out_of_reach_of_user_code() {
    // The init (PID 1, the same uid) holds the socket the executor speaks to it on: user code may
    // neither open its descriptors, nor trace it, nor kill it, nor outlive its step.
    let c = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <unistd.h>
int main(void) {
    int opened = 0;
    char path[64];
    for (int fd = 0; fd < 64; fd++) {
        snprintf(path, sizeof path, "/proc/1/fd/%d", fd);
        int f = open(path, O_RDWR);
        if (f < 0) f = open(path, O_RDONLY);
        if (f >= 0) { opened++; close(f); }
    }
    printf("init descriptors opened %d\n", opened);
    printf("init traced %d\n", ptrace(PTRACE_ATTACH, 1, 0, 0) == 0);
    kill(1, SIGKILL);
    kill(1, SIGTERM);
    usleep(100000);
    printf("init alive %d\n", kill(1, 0) == 0);
    if (fork() == 0) { setsid(); sleep(30); _exit(0); }
    return 0;
}
"#;
    let started = std::time::Instant::now();
    let done = TestJob::source("c", c).execute().await;
    done.assert_succeeded();
    assert_eq!(
        done.entry("stdout.txt"),
        "init descriptors opened 0\ninit traced 0\ninit alive 1\n"
    );
    // The sleeping child was killed with its step: the job did not wait for it.
    assert!(started.elapsed() < Duration::from_secs(20));
}
