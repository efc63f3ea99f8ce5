//! Graphite paths of perfpipe's series: `host.service.metric`, each part encoded as the
//! Whisper and RRD layouts encode names on disk (every byte outside `[A-Za-z0-9_]` as `%XX`),
//! so a dot or a space in a name can never be read as a separator, and graphite-web over
//! perfpipe's Whisper tree shows the very same paths.

use perfpipe_backend::SeriesKey;

/// The Graphite path of a series.
pub fn graphite_path(key: &SeriesKey) -> String {
    format!(
        "{}.{}.{}",
        encode(&key.host),
        encode(&key.service),
        encode(&key.metric)
    )
}

/// One name as a path component (the files' encoding).
pub fn encode(name: &str) -> String {
    perfpipe_backend::percent_encode(name)
}

/// The series a three-part path names, or `None` when it is not three well-encoded parts.
pub fn decode_path(path: &str) -> Option<SeriesKey> {
    let mut parts = path.split('.');
    let (host, service, metric) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(SeriesKey::new(
        decode(host)?,
        decode(service)?,
        decode(metric)?,
    ))
}

/// A component back to its name: `%XX` to the byte; `None` for a bad escape or non-UTF-8.
pub fn decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_awkward_names() {
        let key = SeriesKey::new("web-01.example.com", "HTTP check", "time/ms");
        let path = graphite_path(&key);
        assert_eq!(path, "web%2D01%2Eexample%2Ecom.HTTP%20check.time%2Fms");
        assert_eq!(decode_path(&path), Some(key));
        assert_eq!(decode_path("a.b"), None);
        assert_eq!(decode_path("a.b.%G1"), None);
    }
}
