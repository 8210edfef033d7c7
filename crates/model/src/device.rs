//! Where a model runs and in what precision, as a person names it (`--device auto|cpu|cuda[:N]`,
//! `--dtype`, the window's Device setting), and what that device is using: the one place every
//! loader turns a choice into a candle [`Device`], so the CLI, the window and the benches cannot
//! disagree about what `auto` means.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, DeviceLocation};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A device as a person names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The first CUDA GPU when this build has CUDA and one answers, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU of this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            ModelError::Device(format!(
                "{s:?} names no device: use auto, cpu, cuda or cuda:N (N a GPU number, from 0)"
            ))
        };
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => {
                let n = other
                    .strip_prefix("cuda:")
                    .or_else(|| other.strip_prefix("gpu:"))
                    .ok_or_else(bad)?;
                n.parse().map(Self::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl DeviceChoice {
    /// Opens the device. `auto` falls back to the CPU when no GPU answers and logs which it
    /// took; a GPU named outright that cannot be opened is an error saying why, never a quiet
    /// CPU run.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => cuda(n),
            Self::Auto => {
                if !candle_core::utils::cuda_is_available() {
                    tracing::info!("running on the CPU (this build has no CUDA support)");
                    return Ok(Device::Cpu);
                }
                match cuda(0) {
                    Ok(device) => {
                        tracing::info!("running on CUDA GPU 0");
                        Ok(device)
                    }
                    Err(e) => {
                        tracing::info!(reason = %e, "no GPU answered; running on the CPU");
                        Ok(Device::Cpu)
                    }
                }
            }
        }
    }
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(ModelError::Device(format!(
            "cuda:{ordinal} was asked for, but this build has no CUDA support: build with \
             --features cuda (bench/cuda/pack.sh does so without a CUDA install), or choose \
             the CPU (--device cpu; in the window, Settings → Device)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        ModelError::Device(format!(
            "CUDA GPU {ordinal} cannot be opened ({e}): check the NVIDIA driver with nvidia-smi, \
             or choose the CPU (--device cpu; in the window, Settings → Device)"
        ))
    })
}

/// The precision of the frozen weights, as a person names it; LoRA weights and the optimiser
/// state stay f32 whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// bf16 on a GPU, f32 on the CPU (where candle's bf16 matmul is slow).
    #[default]
    Auto,
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

impl Precision {
    /// The dtype to load with on `device`.
    pub fn dtype(self, device: &Device) -> DType {
        match self {
            Self::Auto if device.is_cuda() => DType::BF16,
            Self::Auto | Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

impl FromStr for Precision {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" | "half" => Ok(Self::F16),
            other => Err(ModelError::Device(format!(
                "{other:?} names no precision: use auto, f32, bf16 or f16"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

impl TryFrom<String> for Precision {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Precision> for String {
    fn from(p: Precision) -> String {
        p.to_string()
    }
}

/// The device in words for a status line: `CPU` or `CUDA GPU 0`.
pub fn describe(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "CPU".into(),
        DeviceLocation::Cuda { gpu_id } => format!("CUDA GPU {gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("Metal GPU {gpu_id}"),
    }
}

/// Memory in use where a model runs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    /// Bytes in use: this process's resident memory on the CPU; all allocations on a GPU
    /// (CUDA reports the device, not the process).
    pub used: u64,
    /// The memory there is: the machine's RAM, or the GPU's.
    pub total: u64,
}

/// What `device` is using now, or `None` where that cannot be read (no `/proc`, a driver
/// error).
pub fn memory(device: &Device) -> Option<MemoryUse> {
    match device {
        Device::Cpu => {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            Some(MemoryUse {
                used: kib_field(&status, "VmRSS:")? * 1024,
                total: kib_field(&meminfo, "MemTotal:")? * 1024,
            })
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let (free, total) = cuda.cuda_stream().context().mem_get_info().ok()?;
            Some(MemoryUse {
                used: (total - free) as u64,
                total: total as u64,
            })
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// `Name:   1234 kB` from a `/proc` file, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("gpu", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
            (" gpu:1 ", DeviceChoice::Cuda(1)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice, "{text}");
            let back: DeviceChoice = choice.to_string().parse().unwrap();
            assert_eq!(back, choice);
        }
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "metal"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
        let json = serde_json::to_string(&DeviceChoice::Cuda(2)).unwrap();
        assert_eq!(json, "\"cuda:2\"");
        assert!(serde_json::from_str::<DeviceChoice>("\"cuda:z\"").is_err());
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("int4".parse::<Precision>().is_err());
    }

    #[test]
    fn auto_runs_where_the_build_can_and_a_named_gpu_never_falls_back_quietly() {
        let auto = DeviceChoice::Auto.open().unwrap();
        assert_eq!(
            auto.is_cuda(),
            candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok()
        );
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        // No machine has a thousand GPUs: asking for one must fail, in any build.
        let e = DeviceChoice::Cuda(999).open().unwrap_err().to_string();
        if cfg!(feature = "cuda") {
            assert!(e.contains("CUDA GPU 999 cannot be opened"), "{e}");
        } else {
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn precision_follows_the_device_unless_named() {
        assert_eq!(Precision::Auto.dtype(&Device::Cpu), DType::F32);
        assert_eq!(Precision::Bf16.dtype(&Device::Cpu), DType::BF16);
        assert_eq!(describe(&Device::Cpu), "CPU");
    }

    #[test]
    fn the_cpu_reports_this_process_within_the_machine() {
        let m = memory(&Device::Cpu).expect("Linux has /proc");
        assert!(m.used > 1 << 20 && m.used < m.total, "{m:?}");
    }
}
