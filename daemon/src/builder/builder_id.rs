//! The builder's stable identity: `<images-dir>/builder_id.txt`, a uuid4 string created
//! on first start and read back afterwards. Build records carry it (`builder_id`) so a
//! builder recognises its own builds after a restart or a hostname change.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the builder id inside `images-dir`.
pub const BUILDER_ID_FILE: &str = "builder_id.txt";

/// Why the builder id could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum BuilderIdError {
    /// Reading, creating or writing the file failed.
    #[error("builder id file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds no id.
    #[error("builder id file {path} is empty")]
    Empty { path: PathBuf },
}

/// Path of the builder id file in `images_dir`.
pub fn builder_id_path(images_dir: &Path) -> PathBuf {
    images_dir.join(BUILDER_ID_FILE)
}

/// Returns the id stored in `<images_dir>/builder_id.txt`, creating `images_dir` and the
/// file (with a fresh uuid4, no trailing newline, as Nodepool writes it) when missing.
/// Surrounding whitespace in an existing file is ignored.
pub fn read_or_create(images_dir: &Path) -> Result<String, BuilderIdError> {
    let path = builder_id_path(images_dir);
    let io_err = |source| BuilderIdError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    std::fs::create_dir_all(images_dir).map_err(|source| BuilderIdError::Io {
        path: images_dir.to_path_buf(),
        source,
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    // Write a temporary file and link it into place, so a concurrent starter or a crash
    // never leaves a half-written id; whoever links first wins and everyone reads that.
    let tmp = images_dir.join(format!(
        ".{BUILDER_ID_FILE}.{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(io_err)?;
            parse(&path, &text)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<String, BuilderIdError> {
    let id = text.trim();
    if id.is_empty() {
        return Err(BuilderIdError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("images");
        let id = read_or_create(&images).expect("create");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(
            std::fs::read_to_string(images.join(BUILDER_ID_FILE)).ok(),
            Some(id.clone())
        );
        assert_eq!(read_or_create(&images).expect("read"), id);
        // Only the id file is left behind.
        let names: Vec<_> = std::fs::read_dir(&images)
            .expect("readdir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, [BUILDER_ID_FILE]);
    }

    #[test]
    fn keeps_an_existing_id_and_trims_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BUILDER_ID_FILE), "my-builder\n").expect("write");
        assert_eq!(read_or_create(dir.path()).expect("read"), "my-builder");
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BUILDER_ID_FILE), "  \n").expect("write");
        assert!(matches!(
            read_or_create(dir.path()),
            Err(BuilderIdError::Empty { .. })
        ));
    }
}
