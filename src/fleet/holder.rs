//! Who an instance is, and when it is certainly dead without waiting for its lease.
//!
//! Every lease and job record carries its holder: the instance id (a UUIDv7 minted at
//! start-up) plus where the process runs. Expiry is the general rule — a holder is gone
//! once its lease ran out — but a restart on the same machine should not wait out the TTL
//! to see that its predecessor died: when the holder ran under the same kernel boot and in
//! the same pid namespace as we do, "no process with that pid and that start time" proves
//! it dead. Different boots, namespaces (containers) or hosts never prove anything; then
//! only the expiry counts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An instance and the process it runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The instance id (new at every start).
    pub instance: Uuid,
    /// Host name, for people.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: the same id means the same machine and boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The pid namespace (`/proc/self/ns/pid`): pids only compare within one.
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// The process's start time in clock ticks after boot (`/proc/PID/stat` field 22): a
    /// reused pid has another.
    #[serde(default)]
    pub started_ticks: Option<u64>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/{pid}/stat` (the comm field may hold spaces and parentheses, so
/// the fields are counted from the last `)`).
fn started_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // after ")" come field 3 (state) onwards: field 22 is the 20th of them
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Holder {
    /// This process, as instance `instance`.
    pub fn current(instance: Uuid) -> Holder {
        let host = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        Holder {
            instance,
            host,
            pid: std::process::id(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.display().to_string()),
            started_ticks: started_ticks("self"),
        }
    }

    /// Whether `self` is certainly not running, judged from `me`'s machine: only when both
    /// ran under the same boot and pid namespace, and its pid is gone or belongs to a
    /// process started at another time. `false` means "maybe alive" (wait for expiry).
    pub fn provably_dead(&self, me: &Holder) -> bool {
        if self.instance == me.instance {
            return false;
        }
        let same_place = self.boot_id.is_some()
            && self.boot_id == me.boot_id
            && self.pid_ns.is_some()
            && self.pid_ns == me.pid_ns;
        if !same_place {
            return false;
        }
        match started_ticks(&self.pid.to_string()) {
            None => true, // no such process
            Some(t) => self.started_ticks.is_some_and(|mine| mine != t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_pid_is_dead() {
        let me = Holder::current(Uuid::now_v7());
        assert!(me.started_ticks.is_some(), "Linux gives a start time");
        let twin = Holder {
            instance: Uuid::now_v7(),
            ..me.clone()
        };
        assert!(!twin.provably_dead(&me), "the same live process is not dead");
        assert!(!me.provably_dead(&me), "an instance never judges itself dead");
        // a pid far above pid_max (4194304) cannot exist
        let gone = Holder {
            pid: 999_999_999,
            ..twin.clone()
        };
        assert!(gone.provably_dead(&me));
        let reused = Holder {
            started_ticks: twin.started_ticks.map(|t| t + 1),
            ..twin.clone()
        };
        assert!(reused.provably_dead(&me), "a reused pid started at another time");
    }

    #[test]
    fn another_machine_or_namespace_proves_nothing() {
        let me = Holder::current(Uuid::now_v7());
        let gone = Holder {
            instance: Uuid::now_v7(),
            pid: 999_999_999,
            ..me.clone()
        };
        let elsewhere = Holder {
            boot_id: Some("another-boot".into()),
            ..gone.clone()
        };
        assert!(!elsewhere.provably_dead(&me));
        let container = Holder {
            pid_ns: Some("pid:[1]".into()),
            ..gone.clone()
        };
        assert!(!container.provably_dead(&me));
        let unknown = Holder {
            boot_id: None,
            ..gone
        };
        assert!(
            !unknown.provably_dead(&me),
            "old records without the facts wait for expiry"
        );
    }
}
