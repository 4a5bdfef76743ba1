//! The shared secret ("Erlang cookie"): `--cookie-file`, else `WARREN_COOKIE_FILE`, else
//! `$HOME/.warren.cookie`. A node creates a random one (mode 0600) on first start; a file
//! readable or writable by group or others is refused, naming the file and the fix.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the cookie lives, following the precedence above.
pub fn path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("WARREN_COOKIE_FILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".warren.cookie")
}

/// Reads the cookie, checking its permissions.
pub fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("Error when reading {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "Cookie file {} must be accessible by owner only (its mode is {mode:04o}); fix it with: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error when reading {}: {e}", path.display()))?;
    let cookie = text.trim().to_string();
    if cookie.is_empty() {
        return Err(format!("Cookie file {} is empty", path.display()));
    }
    Ok(cookie)
}

/// Reads the cookie, creating a random one (mode 0600) if the file does not exist.
pub fn read_or_create(path: &Path) -> Result<String, String> {
    if !path.exists() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let cookie: String = (0..20)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(cookie.as_bytes()).map_err(|e| {
                    format!("Failed to write cookie file '{}': {e}", path.display())
                })?;
            }
            // Another node on this host created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(format!(
                    "Failed to create cookie file '{}': {e}",
                    path.display()
                ))
            }
        }
    }
    read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_cookie_and_refuses_open_ones() {
        let dir = std::env::temp_dir().join(format!("warren-cookie-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join(".warren.cookie");
        let c = read_or_create(&p).unwrap();
        assert_eq!(c.len(), 20);
        assert_eq!(read_or_create(&p).unwrap(), c);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err();
        assert!(
            e.contains("must be accessible by owner only") && e.contains("chmod 600"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
