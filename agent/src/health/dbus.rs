//! The D-Bus connection the checks share: the system bus or an explicit
//! address, opened with a timeout, replaced once when dbus restarts, and a
//! bound on how many checks use it at once. The unit checks
//! ([`super::systemd`]) and the time-sync fallback ([`super::timesync`])
//! talk to their services over it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest [`Bus::connect`] waits for the bus to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks that run at once on one [`Bus`]; more wait their turn. A unit
/// check has up to 5 calls in flight, and dbus-daemon answers a connection with more
/// than 128 pending calls with `LimitsExceeded` (its default
/// `max_replies_per_connection`).
const MAX_CONCURRENT_CHECKS: usize = 16;

/// Where to reach systemd: the system bus by default, or an explicit
/// address (tests: `"unix:path=/proc/<pid>/root/run/dbus/system_bus_socket"`).
///
/// Cheap to clone and to share across tasks: clones share one connection.
/// A connection the bus has dropped (dbus restarted) is replaced on the
/// next check that finds it broken.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: Option<String>,
    /// The connection and a generation number, so that checks that all
    /// find the same connection broken replace it once.
    conn: Mutex<(u64, zbus::Connection)>,
    /// See [`MAX_CONCURRENT_CHECKS`].
    checks: tokio::sync::Semaphore,
}

impl Bus {
    /// Connects to the system bus (`None`) or to `address` (a D-Bus
    /// address such as `unix:path=/run/dbus/system_bus_socket`). `Err`
    /// says why not, for a check that is then `unknown`.
    pub async fn connect(address: Option<&str>) -> Result<Bus, String> {
        let conn = open(address).await?;
        Ok(Bus {
            inner: Arc::new(Inner {
                address: address.map(str::to_string),
                conn: Mutex::new((0, conn)),
                checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
            }),
        })
    }

    /// Waits for a turn to use the bus (see [`MAX_CONCURRENT_CHECKS`]);
    /// the turn ends when the permit is dropped.
    pub(crate) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // Never closed, so this always gives a permit.
        self.inner.checks.acquire().await.ok()
    }

    /// What error messages call this bus.
    pub(crate) fn name(&self) -> String {
        bus_name(self.inner.address.as_deref())
    }

    /// The connection, for other services on the same bus (timedated).
    pub fn connection(&self) -> zbus::Connection {
        self.current().1
    }

    /// The connection and its generation: how many times it has been
    /// replaced.
    pub fn current(&self) -> (u64, zbus::Connection) {
        match self.inner.conn.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces connection `generation` with a new one, unless another
    /// check has done so already; returns the connection to use.
    pub(crate) async fn reconnect(&self, generation: u64) -> Result<zbus::Connection, String> {
        let (now, conn) = self.current();
        if now != generation {
            return Ok(conn);
        }
        let fresh = open(self.inner.address.as_deref()).await?;
        let mut guard = match self.inner.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.0 == generation {
            *guard = (generation.wrapping_add(1), fresh.clone());
            Ok(fresh)
        } else {
            Ok(guard.1.clone())
        }
    }
}

/// What [`Bus::connect`] and the error messages call the bus.
fn bus_name(address: Option<&str>) -> String {
    match address {
        None => "the system bus".to_string(),
        Some(a) => format!("D-Bus at {a}"),
    }
}

async fn open(address: Option<&str>) -> Result<zbus::Connection, String> {
    let name = bus_name(address);
    let builder = match address {
        None => zbus::connection::Builder::system(),
        Some(a) => zbus::connection::Builder::address(a),
    }
    .map_err(|e| format!("cannot connect to {name}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to {name}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {name}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_errors_are_reasons() {
        let got = Bus::connect(Some("unix:path=/nonexistent/owui/bus_socket")).await;
        let err = got.map(|_| ()).unwrap_err();
        assert!(
            err.starts_with("cannot connect to D-Bus at unix:path=/nonexistent/owui/bus_socket: "),
            "{err}"
        );
        let err = Bus::connect(Some("carrier-pigeon:loft=3"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.starts_with("cannot connect to D-Bus at carrier-pigeon:loft=3"),
            "{err}"
        );
    }
}
