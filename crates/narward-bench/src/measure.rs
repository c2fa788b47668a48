//! Running a contender as a child process: wall time from the parent, peak RSS and CPU
//! time from `wait4`'s rusage, an optional address-space limit (so a contender that would
//! exhaust the machine fails alone instead of waking the kernel's OOM killer) and a time
//! limit.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of one command.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub wall_s: f64,
    pub max_rss_bytes: u64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Exit code, or 128 + signal.
    pub status: i32,
    pub timed_out: bool,
    /// Up to 64 KiB of standard output.
    pub stdout: String,
    /// The first and the last 4 KiB of standard error (the cause of a failure is usually
    /// at the start, the last words at the end).
    pub stderr_head: String,
    pub stderr_tail: String,
    /// Lines of standard output (counted in full).
    pub stdout_lines: u64,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.status == 0 && !self.timed_out
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// RLIMIT_AS in bytes.
    pub address_space: Option<u64>,
    /// RLIMIT_STACK in bytes (a larger one also allows a longer argument list).
    pub stack: Option<u64>,
    pub timeout: Option<Duration>,
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn tail(p: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

fn head(p: &Path, max: u64) -> String {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(p) else {
        return String::new();
    };
    let mut b = Vec::new();
    let _ = f.take(max).read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// Run `cmd` to completion with `limits`; standard output and error go to files in
/// `scratch` (so a large output cannot block the child).
///
/// # Errors
/// The command cannot be started.
pub fn run(mut cmd: Command, limits: Limits, scratch: &Path) -> Result<Sample> {
    std::fs::create_dir_all(scratch)?;
    let out_p = scratch.join("stdout");
    let err_p = scratch.join("stderr");
    // Failures should say why in one line, not in a backtrace.
    cmd.env("RUST_BACKTRACE", "0");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p)?)
        .stderr(std::fs::File::create(&err_p)?);
    let (asl, stack) = (limits.address_space, limits.stack);
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit) are made.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let l = libc::rlimit {
                    rlim_cur: v as libc::rlim_t,
                    rlim_max: v as libc::rlim_t,
                };
                if libc::setrlimit(res, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            if let Some(v) = asl {
                set(libc::RLIMIT_AS, v)?;
            }
            if let Some(v) = stack {
                set(libc::RLIMIT_STACK, v)?;
            }
            Ok(())
        });
    }
    let desc = format!("{cmd:?}");
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {desc}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: pid is our own child; status and ru are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("wait4 on {desc}: {e}");
        }
        if let Some(t) = limits.timeout
            && !timed_out
            && start.elapsed() > t
        {
            timed_out = true;
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(if start.elapsed().as_secs() < 2 {
            2
        } else {
            20
        }));
    }
    let wall = start.elapsed().as_secs_f64();
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let stdout_lines = {
        use std::io::Read;
        let mut n = 0u64;
        if let Ok(f) = std::fs::File::open(&out_p) {
            let mut r = std::io::BufReader::with_capacity(1 << 20, f);
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(k) = r.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        n
    };
    let mut stdout = std::fs::read(&out_p).unwrap_or_default();
    stdout.truncate(64 << 10);
    Ok(Sample {
        wall_s: wall,
        max_rss_bytes: ru.ru_maxrss as u64 * 1024,
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        status: code,
        timed_out,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr_head: head(&err_p, 4096),
        stderr_tail: tail(&err_p, 4096),
        stdout_lines,
    })
}

/// This process's `VmRSS` and `VmHWM` (peak) in bytes, from `/proc/self/status`.
pub fn self_rss() -> (u64, u64) {
    let t = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Reset `VmHWM` to the current RSS (Linux ≥ 4.0), so the next phase's peak can be read.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Limit this process's address space (for in-process probes).
pub fn limit_self(bytes: u64) {
    let l = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: plain syscall with a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &l) };
}

/// Available memory (`MemAvailable`) in bytes.
pub fn mem_available() -> u64 {
    let t = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    t.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
