//! The real GPU interface: NVIDIA's NVML, loaded from the driver's
//! `libnvidia-ml.so.1` at run time (nvml-wrapper), so the agent builds and
//! runs on machines without the driver and says clearly when it is missing.

use std::ffi::OsStr;
use std::sync::{Mutex, OnceLock};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::event::EventSet;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;
use owui_bundle::{Error, Result};

use super::api::{GpuApi, GpuDevice, Sample, XidEvent};

/// NVML field IDs for row remapping (nvml.h: NVML_FI_DEV_REMAPPED_*).
const FI_REMAPPED_UNC: u32 = 143;
const FI_REMAPPED_PENDING: u32 = 144;
const FI_REMAPPED_FAILURE: u32 = 145;

/// The library stays loaded for the life of the process; event sets
/// borrow it.
static NVML: OnceLock<Nvml> = OnceLock::new();
static EVENTS: Mutex<Option<EventSet<'static>>> = Mutex::new(None);

pub struct NvmlGpu {
    nvml: &'static Nvml,
    library: String,
}

fn nvml_error(library: &str, what: &str, e: NvmlError) -> Error {
    Error::tool(format!("NVML ({library})"), format!("{what}: {e}"))
}

impl NvmlGpu {
    /// Loads the library. A missing library is an error naming it and what
    /// ships it.
    pub fn open(library: &str) -> Result<NvmlGpu> {
        if let Some(nvml) = NVML.get() {
            return Ok(NvmlGpu {
                nvml,
                library: library.to_string(),
            });
        }
        let loaded = Nvml::builder()
            .lib_path(OsStr::new(library))
            .init()
            .map_err(|e| match e {
                NvmlError::LibloadingError(e) => Error::tool(
                    library,
                    format!(
                        "cannot load the NVML library {library}: {e}. It ships with the \
                         NVIDIA driver (the pinned set's NVML package, e.g. \
                         libnvidia-tesla-535-ml1); the driver set is not installed in this \
                         image or the library is not on the loader's path"
                    ),
                ),
                NvmlError::DriverNotLoaded => Error::tool(
                    library,
                    "NVML is present but the NVIDIA kernel driver is not loaded \
                     (modprobe nvidia)",
                ),
                e => nvml_error(library, "initialising NVML", e),
            })?;
        let nvml = NVML.get_or_init(|| loaded);
        Ok(NvmlGpu {
            nvml,
            library: library.to_string(),
        })
    }

    fn err(&self, what: &str) -> impl Fn(NvmlError) -> Error + '_ {
        let what = what.to_string();
        move |e| nvml_error(&self.library, &what, e)
    }
}

/// Turns "not supported on this GPU" into `None`, keeps real failures.
fn optional<T>(r: std::result::Result<T, NvmlError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            if !matches!(e, NvmlError::NotSupported) {
                tracing::debug!("NVML: {e}");
            }
            None
        }
    }
}

fn field_u64(v: &std::result::Result<SampleValue, NvmlError>) -> Option<u64> {
    match v {
        Ok(SampleValue::U32(x)) => Some(u64::from(*x)),
        Ok(SampleValue::U64(x)) => Some(*x),
        Ok(SampleValue::I64(x)) => u64::try_from(*x).ok(),
        Ok(SampleValue::F64(x)) => (*x >= 0.0).then_some(*x as u64),
        Err(_) => None,
    }
}

impl GpuApi for NvmlGpu {
    fn source(&self) -> String {
        format!("NVML ({})", self.library)
    }

    fn driver_version(&mut self) -> Result<String> {
        self.nvml
            .sys_driver_version()
            .map_err(self.err("reading the driver version"))
    }

    fn devices(&mut self) -> Result<Vec<GpuDevice>> {
        let count = self
            .nvml
            .device_count()
            .map_err(self.err("counting devices"))?;
        let mut out = Vec::new();
        for index in 0..count {
            let d = self
                .nvml
                .device_by_index(index)
                .map_err(self.err(&format!("opening device {index}")))?;
            let pci = d.pci_info().map_err(self.err("reading PCI info"))?;
            out.push(GpuDevice {
                index,
                uuid: d.uuid().map_err(self.err("reading the UUID"))?,
                name: d.name().map_err(self.err("reading the name"))?,
                pci_bus_id: normalise_bus_id(&pci.bus_id),
                minor: d
                    .minor_number()
                    .map_err(self.err("reading the minor number"))?,
            });
        }
        Ok(out)
    }

    fn sample(&mut self, device: &GpuDevice) -> Result<Sample> {
        let d = self
            .nvml
            .device_by_index(device.index)
            .map_err(self.err(&format!("opening device {}", device.index)))?;
        let fields = optional(d.field_values_for(&[
            FieldId(FI_REMAPPED_UNC),
            FieldId(FI_REMAPPED_PENDING),
            FieldId(FI_REMAPPED_FAILURE),
        ]))
        .unwrap_or_default();
        let field = |id: u32| {
            fields
                .iter()
                .flatten()
                .find(|f| f.field.0 == id)
                .and_then(|f| field_u64(&f.value))
        };
        Ok(Sample {
            temperature_c: optional(d.temperature(TemperatureSensor::Gpu)),
            power_w: optional(d.power_usage()).map(|mw| f64::from(mw) / 1000.0),
            power_limit_w: optional(d.enforced_power_limit()).map(|mw| f64::from(mw) / 1000.0),
            ecc_uncorrected_volatile: optional(
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
            ),
            ecc_uncorrected_aggregate: optional(
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate),
            ),
            retired_pages_pending: optional(d.are_pages_pending_retired()),
            remapped_rows_pending: field(FI_REMAPPED_PENDING).map(|v| v != 0),
            remapped_rows_failure: field(FI_REMAPPED_FAILURE).map(|v| v != 0),
            remapped_rows_uncorrectable: field(FI_REMAPPED_UNC),
            pcie_gen_current: optional(d.current_pcie_link_gen()),
            pcie_gen_max: optional(d.max_pcie_link_gen()),
            pcie_width_current: optional(d.current_pcie_link_width()),
            pcie_width_max: optional(d.max_pcie_link_width()),
        })
    }

    fn xid_events(&mut self) -> Result<Vec<XidEvent>> {
        let mut slot = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let mut set = self
                .nvml
                .create_event_set()
                .map_err(self.err("creating an event set"))?;
            let count = self
                .nvml
                .device_count()
                .map_err(self.err("counting devices"))?;
            for index in 0..count {
                let d = self
                    .nvml
                    .device_by_index(index)
                    .map_err(self.err(&format!("opening device {index}")))?;
                set = d
                    .register_events(EventTypes::CRITICAL_XID_ERROR, set)
                    .map_err(|e| nvml_error(&self.library, "watching XID events", e.error))?;
            }
            *slot = Some(set);
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if let Some(set) = slot.as_ref() {
            loop {
                match set.wait(0) {
                    Ok(ev) => {
                        let index = ev.device.index().unwrap_or(u32::MAX);
                        if let Some(XidError::Value(xid)) = ev.event_data {
                            out.push(XidEvent { index, xid });
                        }
                    }
                    Err(NvmlError::Timeout) => break,
                    Err(e) => return Err(nvml_error(&self.library, "reading XID events", e)),
                }
            }
        }
        Ok(out)
    }
}

/// NVML writes `00000000:1B:00.0`; sysfs writes `0000:1b:00.0`.
pub fn normalise_bus_id(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    match id.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            let domain = &domain[domain.len() - 4..];
            format!("{domain}:{rest}")
        }
        _ => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_compare_with_sysfs() {
        assert_eq!(normalise_bus_id("00000000:1B:00.0"), "0000:1b:00.0");
        assert_eq!(normalise_bus_id("0000:1b:00.0"), "0000:1b:00.0");
    }

    #[test]
    fn a_missing_library_is_named() {
        let err = NvmlGpu::open("libnvidia-ml-owui-test-absent.so.1")
            .err()
            .expect("no such library here");
        let text = err.to_string();
        assert!(
            text.contains("libnvidia-ml-owui-test-absent.so.1")
                && text.contains("libnvidia-tesla-535-ml1"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 7);
    }
}
