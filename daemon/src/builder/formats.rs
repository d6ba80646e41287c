//! Image formats of a finished build: which file extension a requested format gives,
//! what a build produced, producing a missing format from an existing one with real
//! `qemu-img convert` (plus checksum sidecars), and the allocated size of each image
//! file for `nodepool.dib_image_build.<image>.<ext>.size`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use md5::Digest;

use super::files::{self, FilesError, LocalBuild};

/// The qemu-img binary (looked up in `PATH`).
pub const QEMU_IMG: &str = "qemu-img";

/// Source formats tried, in order, when converting.
const SOURCE_PREFERENCE: [&str; 3] = ["raw", "qcow2", "vhd"];

/// Why a format could not be produced or measured.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Scanning the images directory failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A required format has no qemu-img equivalent.
    #[error("format `{format}` of build {build} cannot be produced with qemu-img")]
    Unconvertible { build: String, format: String },
    /// The build has no image file qemu-img can convert from.
    #[error("build {build} has no image to convert to `{format}` from")]
    NoSource { build: String, format: String },
    /// qemu-img could not be started.
    #[error("running {QEMU_IMG} for {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// qemu-img failed.
    #[error("{QEMU_IMG} convert to {path} failed ({status}): {stderr}")]
    Qemu {
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// Reading, hashing, renaming or measuring a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file extension diskimage-builder gives format `format` (`squashfs` → `squash`,
/// otherwise the format name itself).
pub fn extension(format: &str) -> &str {
    match format {
        "squashfs" => "squash",
        other => other,
    }
}

/// The qemu-img format name for an image format, if qemu-img handles it
/// (`vhd` is qemu's `vpc`).
pub fn qemu_format(format: &str) -> Option<&'static str> {
    match format {
        "qcow2" => Some("qcow2"),
        "raw" => Some("raw"),
        "vhd" => Some("vpc"),
        "vmdk" => Some("vmdk"),
        "vdi" => Some("vdi"),
        _ => None,
    }
}

/// `<images_dir>/<image>-<build_id>.<ext of format>`.
pub fn image_path(images_dir: &Path, image: &str, build_id: &str, format: &str) -> PathBuf {
    images_dir.join(format!("{image}-{build_id}.{}", extension(format)))
}

/// The requested formats whose image file is missing from `build`.
pub fn missing_formats(build: &LocalBuild, formats: &BTreeSet<String>) -> BTreeSet<String> {
    formats
        .iter()
        .filter(|f| !build.images.contains_key(extension(f)))
        .cloned()
        .collect()
}

/// Allocated size of a file in bytes (`st_blocks * 512`): what a sparse image really
/// uses, as Nodepool reports it.
pub fn allocated_size(path: &Path) -> Result<u64, FormatError> {
    let meta = std::fs::metadata(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(meta.blocks().saturating_mul(512))
}

/// Allocated sizes of the image files of `formats`, keyed by extension (the `<ext>`
/// of the size metric).
pub fn image_sizes(
    images_dir: &Path,
    image: &str,
    build_id: &str,
    formats: &BTreeSet<String>,
) -> Result<BTreeMap<String, u64>, FormatError> {
    formats
        .iter()
        .map(|f| {
            let size = allocated_size(&image_path(images_dir, image, build_id, f))?;
            Ok((extension(f).to_string(), size))
        })
        .collect()
}

/// Converts `src` (format `src_format`) to `dst` (format `dst_format`) with
/// `qemu-img convert`, writing a hidden temporary file first and renaming it into
/// place. `options` (e.g. `compat=0.10`) are passed as `-o`.
pub async fn convert(
    src: &Path,
    src_format: &str,
    dst: &Path,
    dst_format: &str,
    options: Option<&str>,
) -> Result<(), FormatError> {
    let unconvertible = |format: &str| FormatError::Unconvertible {
        build: src.display().to_string(),
        format: format.to_string(),
    };
    let in_fmt = qemu_format(src_format).ok_or_else(|| unconvertible(src_format))?;
    let out_fmt = qemu_format(dst_format).ok_or_else(|| unconvertible(dst_format))?;
    let dir = dst.parent().unwrap_or(Path::new("."));
    let file_name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.{}.part",
        uuid::Uuid::new_v4().simple()
    ));
    let mut cmd = tokio::process::Command::new(QEMU_IMG);
    cmd.arg("convert")
        .arg("-f")
        .arg(in_fmt)
        .arg("-O")
        .arg(out_fmt);
    if let Some(options) = options {
        cmd.arg("-o").arg(options);
    }
    cmd.arg(src).arg(&tmp).kill_on_drop(true);
    let output = cmd.output().await.map_err(|source| FormatError::Spawn {
        path: dst.to_path_buf(),
        source,
    });
    let result = match output {
        Ok(out) if out.status.success() => {
            std::fs::rename(&tmp, dst).map_err(|source| FormatError::Io {
                path: dst.to_path_buf(),
                source,
            })
        }
        Ok(out) => Err(FormatError::Qemu {
            path: dst.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `<path>.md5` and `<path>.sha256` (`<hex>  <file name>\n`, as md5sum /
/// sha256sum print it) for an image file. Hashing runs on a blocking thread.
pub async fn write_checksums(path: &Path) -> Result<(), FormatError> {
    let path = path.to_path_buf();
    let task_path = path.clone();
    tokio::task::spawn_blocking(move || write_checksums_blocking(&task_path))
        .await
        .map_err(|e| FormatError::Io {
            path,
            source: std::io::Error::other(e),
        })?
}

fn write_checksums_blocking(path: &Path) -> Result<(), FormatError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| FormatError::Io { path: p, source }
    };
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut md5 = md5::Md5::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (ext, digest) in [
        ("md5", hex(&md5.finalize())),
        ("sha256", hex(&sha.finalize())),
    ] {
        let sidecar = PathBuf::from(format!("{}.{ext}", path.display()));
        std::fs::write(&sidecar, format!("{digest}  {name}\n")).map_err(io(&sidecar))?;
    }
    Ok(())
}

/// Makes sure build `<image>-<build_id>` has an image file for each of `formats`,
/// converting missing ones from an existing image (raw preferred, then qcow2, vhd)
/// and writing their checksums. qcow2 output gets `-o <qcow2_options>` when given.
/// Returns the formats that were produced.
pub async fn ensure_formats(
    images_dir: &Path,
    image: &str,
    build_id: &str,
    formats: &BTreeSet<String>,
    qcow2_options: Option<&str>,
) -> Result<BTreeSet<String>, FormatError> {
    let build_name = format!("{image}-{build_id}");
    let build = files::local_build(images_dir, image, build_id)?.unwrap_or_default();
    let missing = missing_formats(&build, formats);
    if missing.is_empty() {
        return Ok(missing);
    }
    let source = SOURCE_PREFERENCE
        .iter()
        .find_map(|f| build.images.get(*f).map(|p| (*f, p.clone())))
        .or_else(|| {
            build
                .images
                .iter()
                .find(|(ext, _)| qemu_format(ext).is_some())
                .map(|(ext, p)| (ext.as_str(), p.clone()))
        });
    let mut produced = BTreeSet::new();
    for format in &missing {
        if qemu_format(format).is_none() {
            return Err(FormatError::Unconvertible {
                build: build_name,
                format: format.clone(),
            });
        }
        let Some((src_format, src)) = &source else {
            return Err(FormatError::NoSource {
                build: build_name,
                format: format.clone(),
            });
        };
        let dst = image_path(images_dir, image, build_id, format);
        let options = if format == "qcow2" {
            qcow2_options
        } else {
            None
        };
        tracing::info!(src = %src.display(), dst = %dst.display(), "converting image format");
        convert(src, src_format, &dst, format, options).await?;
        write_checksums(&dst).await?;
        produced.insert(format.clone());
    }
    Ok(produced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_qemu_names() {
        assert_eq!(extension("qcow2"), "qcow2");
        assert_eq!(extension("squashfs"), "squash");
        assert_eq!(qemu_format("vhd"), Some("vpc"));
        assert_eq!(qemu_format("tar"), None);
    }

    #[test]
    fn missing() {
        let mut build = LocalBuild::default();
        build
            .images
            .insert("qcow2".into(), PathBuf::from("/x.qcow2"));
        let want: BTreeSet<String> = ["qcow2", "raw"].iter().map(|s| s.to_string()).collect();
        assert_eq!(missing_formats(&build, &want), ["raw".to_string()].into());
    }
}
