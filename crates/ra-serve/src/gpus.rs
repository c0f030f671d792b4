//! Finding GPUs and sharing them out between replicas.

use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// One GPU as `nvidia-smi` reports it (physical index, memory in MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuInfo {
    /// Physical index (nvidia-smi ignores `CUDA_VISIBLE_DEVICES`).
    pub index: u32,
    /// Total memory, MiB.
    pub memory_total_mib: u64,
    /// Memory already in use, MiB.
    pub memory_used_mib: u64,
}

/// Arguments `ra-serve` passes to `nvidia-smi`.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,memory.total,memory.used",
    "--format=csv,noheader,nounits",
];

/// Parses `nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv,noheader,nounits`
/// output such as `0, 143771, 0`.
///
/// ```
/// let gpus = ra_serve::gpus::parse_nvidia_smi("0, 143771, 0\n1, 143771, 512\n").unwrap();
/// assert_eq!(gpus.len(), 2);
/// assert_eq!(gpus[1].memory_used_mib, 512);
/// ```
pub fn parse_nvidia_smi(output: &str) -> Result<Vec<GpuInfo>, Error> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = || Error::GpuQuery(format!("unexpected nvidia-smi line `{line}`"));
            if fields.len() != 3 {
                return Err(bad());
            }
            Ok(GpuInfo {
                index: fields[0].parse().map_err(|_| bad())?,
                memory_total_mib: fields[1].parse().map_err(|_| bad())?,
                memory_used_mib: fields[2].parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// Runs `nvidia-smi`; `Ok(None)` when it is not installed.
pub async fn query_nvidia_smi(bin: &Path) -> Result<Option<Vec<GpuInfo>>, Error> {
    let Some(program) = crate::engine::find_executable(bin) else {
        return Ok(None);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(NVIDIA_SMI_ARGS)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // A wedged driver can make nvidia-smi hang; do not wait forever.
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| Error::GpuQuery("nvidia-smi did not answer within 60 s".into()))?
        .map_err(|e| Error::GpuQuery(format!("could not run nvidia-smi: {e}")))?;
    if !out.status.success() {
        return Err(Error::GpuQuery(format!(
            "nvidia-smi failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)).map(Some)
}

/// Where the GPU list came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuSource {
    /// `--gpus`.
    Flag,
    /// The `CUDA_VISIBLE_DEVICES` environment variable.
    CudaVisibleDevices,
    /// Every GPU `nvidia-smi` lists.
    NvidiaSmi,
}

/// Splits `0,1, 2` (or UUIDs) into ids.
pub fn parse_gpu_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Checks GPU ids before anything uses them: each is a whole number (written
/// canonically in the result, so `00` and `0` are the same GPU) or a
/// `GPU-…`/`MIG-…` UUID, and none appears twice. `source` names where they came
/// from (`--gpus 0,1`, `CUDA_VISIBLE_DEVICES=0,1`) for the messages.
///
/// ```
/// use ra_serve::gpus::validate_gpu_ids;
/// let ids = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
/// assert_eq!(validate_gpu_ids(&ids(&["01", "GPU-8f3e"]), "--gpus 01,GPU-8f3e").unwrap(), ids(&["1", "GPU-8f3e"]));
/// let err = validate_gpu_ids(&ids(&["0", "0"]), "--gpus 0,0").unwrap_err().to_string();
/// assert!(err.contains("GPU 0 is listed twice in --gpus 0,0"), "{err}");
/// assert!(validate_gpu_ids(&ids(&["0", "abc"]), "--gpus 0,abc").is_err());
/// ```
pub fn validate_gpu_ids(ids: &[String], source: &str) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let canonical = if let Ok(n) = id.parse::<u32>() {
            n.to_string()
        } else if id.starts_with('-') && id[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Config(format!(
                "{source}: GPU id `{id}` is negative, which hides every GPU from CUDA; unset it, pass --gpus, or use --engine llama-cpp on a CPU host"
            )));
        } else if (id.starts_with("GPU-") || id.starts_with("MIG-"))
            && id.len() > 4
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'/')
        {
            id.clone()
        } else {
            return Err(Error::Config(format!(
                "{source}: GPU id `{id}` is neither a whole number nor a GPU-…/MIG-… UUID"
            )));
        };
        if out.contains(&canonical) {
            return Err(Error::Config(format!(
                "GPU {canonical} is listed twice in {source}; each GPU can serve one replica"
            )));
        }
        out.push(canonical);
    }
    Ok(out)
}

/// Shares `ids` out: one group of TP × PP GPUs per replica.
///
/// Refuses (before anything starts) more GPUs asked than present, TP × PP not
/// dividing the GPUs when the replica count is implied, and any GPU whose used
/// memory exceeds `(1 − utilization) × total`.
///
/// ```
/// use ra_serve::gpus::plan_gpus;
/// let ids: Vec<String> = (0..8).map(|i| i.to_string()).collect();
/// let groups = plan_gpus(&ids, None, 2, 1, None, 0.9).unwrap();
/// assert_eq!(groups.len(), 4);
/// assert_eq!(groups[1], vec!["2".to_string(), "3".to_string()]);
/// ```
pub fn plan_gpus(
    ids: &[String],
    info: Option<&[GpuInfo]>,
    tp: usize,
    pp: usize,
    replicas: Option<usize>,
    utilization: f64,
) -> Result<Vec<Vec<String>>, Error> {
    if tp == 0 || pp == 0 {
        return Err(Error::Config(
            "tensor and pipeline parallel sizes must be at least 1".into(),
        ));
    }
    let per = tp
        .checked_mul(pp)
        .ok_or_else(|| Error::Config(format!("TP {tp} × PP {pp} is too large to compute")))?;
    if ids.is_empty() {
        return Err(Error::Layout(
            "no GPUs found (nvidia-smi absent and CUDA_VISIBLE_DEVICES unset); pass --gpus, or use --engine llama-cpp on a CPU host".into(),
        ));
    }
    if let Some(info) = info {
        check_listed(ids, info)?;
    }
    let replicas = match replicas {
        Some(0) => return Err(Error::Config("--replicas must be at least 1".into())),
        Some(r) => {
            let Some(need) = r.checked_mul(per).filter(|n| *n <= ids.len()) else {
                return Err(Error::Layout(format!(
                    "{r} replica(s) × TP {tp} × PP {pp} need {} GPUs but only {} are available ({})",
                    r.checked_mul(per)
                        .map_or_else(|| "more".to_string(), |n| n.to_string()),
                    ids.len(),
                    ids.join(",")
                )));
            };
            need / per
        }
        None => {
            if ids.len() < per || !ids.len().is_multiple_of(per) {
                return Err(Error::Layout(format!(
                    "TP {tp} × PP {pp} = {per} does not divide the {} available GPU(s) ({}); pass --replicas or --gpus",
                    ids.len(),
                    ids.join(",")
                )));
            }
            ids.len() / per
        }
    };
    // replicas × per ≤ ids.len() here, so no overflow.
    let used = &ids[..replicas * per];
    if let Some(info) = info {
        check_free_memory(used, info, utilization)?;
    }
    Ok(used.chunks(per).map(|c| c.to_vec()).collect())
}

/// Every numeric id must be a GPU `nvidia-smi` lists.
fn check_listed(ids: &[String], info: &[GpuInfo]) -> Result<(), Error> {
    for id in ids {
        if let Ok(idx) = id.parse::<u32>()
            && !info.iter().any(|g| g.index == idx)
        {
            return Err(Error::Layout(format!(
                "GPU {idx} was asked for but nvidia-smi lists only {} GPU(s) ({})",
                info.len(),
                info.iter()
                    .map(|g| g.index.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    }
    Ok(())
}

/// No used GPU may already hold more than `(1 − utilization) × total`.
fn check_free_memory(used: &[String], info: &[GpuInfo], utilization: f64) -> Result<(), Error> {
    for id in used {
        let Ok(idx) = id.parse::<u32>() else { continue };
        let Some(g) = info.iter().find(|g| g.index == idx) else {
            continue;
        };
        let free_needed = (1.0 - utilization) * g.memory_total_mib as f64;
        if g.memory_used_mib as f64 > free_needed {
            return Err(Error::Layout(format!(
                "GPU {idx} already has {} MiB of {} MiB in use, more than the {:.0} MiB that --gpu-memory-utilization {utilization} leaves free; free the GPU, pick others with --gpus, or lower --gpu-memory-utilization",
                g.memory_used_mib, g.memory_total_mib, free_needed
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    fn info(n: u32, used: u64) -> Vec<GpuInfo> {
        (0..n)
            .map(|index| GpuInfo {
                index,
                memory_total_mib: 80000,
                memory_used_mib: used,
            })
            .collect()
    }

    #[test]
    fn parses_real_nvidia_smi_output_and_rejects_garbage() {
        let g = parse_nvidia_smi("0, 143771, 0\n1, 143771, 12\n").unwrap();
        assert_eq!(g[0].memory_total_mib, 143771);
        assert_eq!(g[1].index, 1);
        assert!(parse_nvidia_smi("No devices were found").is_err());
        assert!(parse_nvidia_smi("").unwrap().is_empty());
    }

    #[test]
    fn default_replicas_fill_the_gpus() {
        let g = plan_gpus(&ids(8), Some(&info(8, 0)), 2, 1, None, 0.9).unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g[3], vec!["6", "7"]);
        let g = plan_gpus(&ids(8), None, 2, 2, None, 0.9).unwrap();
        assert_eq!(
            g,
            vec![
                ids(4),
                vec!["4".to_string(), "5".into(), "6".into(), "7".into()]
            ]
        );
    }

    #[test]
    fn impossible_layouts_are_refused() {
        let e = plan_gpus(&ids(3), None, 2, 1, None, 0.9).unwrap_err();
        assert!(e.to_string().contains("does not divide"), "{e}");
        let e = plan_gpus(&ids(4), None, 2, 1, Some(3), 0.9).unwrap_err();
        assert!(e.to_string().contains("need 6 GPUs"), "{e}");
        let e = plan_gpus(&ids(4), Some(&info(2, 0)), 1, 1, None, 0.9).unwrap_err();
        assert!(e.to_string().contains("GPU 2 was asked for"), "{e}");
        let e = plan_gpus(&ids(2), Some(&info(2, 9000)), 1, 1, None, 0.9).unwrap_err();
        assert!(e.to_string().contains("GPU 0 already has 9000 MiB"), "{e}");
        assert!(plan_gpus(&ids(2), Some(&info(2, 7000)), 1, 1, None, 0.9).is_ok());
        assert!(plan_gpus(&[], None, 1, 1, None, 0.9).is_err());
        // Products that wrap around are refused, not turned into zero replicas.
        let e = plan_gpus(&ids(8), None, 4, 1, Some(1 << 62), 0.9).unwrap_err();
        assert!(e.to_string().contains("need more GPUs"), "{e}");
        assert!(plan_gpus(&ids(8), None, 1 << 32, 1 << 32, None, 0.9).is_err());
    }

    #[test]
    fn explicit_replicas_may_leave_gpus_unused() {
        let g = plan_gpus(&ids(4), None, 1, 1, Some(2), 0.9).unwrap();
        assert_eq!(g, vec![vec!["0"], vec!["1"]]);
    }
}
