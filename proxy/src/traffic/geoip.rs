//! Country and region of an address, from a MaxMind-format database the operator
//! provides (GeoLite2 Country/City or DB-IP Lite; see docs/traffic-rules.md for their
//! licences), read with the maintained `maxminddb` crate. The file is read whole into
//! memory when the config loads, so a lookup is a walk down a tree in RAM, and a
//! reload picks up a refreshed file.

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// An open database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// Where an address is: ISO 3166-1 country (`DE`) and the ISO 3166-2 code of its
/// first subdivision (`BY`), each empty when the database does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub country: String,
    pub region: String,
}

/// The part of a GeoLite2 / DB-IP record read here (both use this layout).
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Code<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Code<'a>>>,
}

#[derive(Deserialize)]
struct Code<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl GeoIp {
    /// Read the database at `path`.
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| e.to_string())?;
        Ok(GeoIp {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `ip` is; empty fields when it is not in the database (or a record is
    /// malformed: a bad record must not fail the click).
    pub fn locate(&self, ip: IpAddr) -> Location {
        let Ok(found) = self.reader.lookup(ip) else {
            return Location::default();
        };
        let Ok(Some(record)) = found.decode::<Record<'_>>() else {
            return Location::default();
        };
        let code = |c: Option<&Code<'_>>| {
            c.and_then(|c| c.iso_code)
                .filter(|s| s.len() <= 8 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
                .map(str::to_ascii_uppercase)
                .unwrap_or_default()
        };
        Location {
            country: code(record.country.as_ref()),
            region: code(record.subdivisions.as_ref().and_then(|s| s.first())),
        }
    }
}
