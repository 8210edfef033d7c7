//! Fetching `http(s)://` image URLs for a request, without letting a request reach what only
//! this machine can reach: loopback, private, link-local, multicast and other non-public
//! addresses are refused whether named by literal or resolved from a name (the check runs in
//! the resolver, so what is checked is what is connected to), no redirect is followed, no
//! proxy is used, and every failure reads the same, so error texts cannot map a network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::ApiError;

/// The one answer a request gets for any image URL that could not be fetched.
pub const FETCH_FAILED: &str = "the image URL could not be fetched (it must be a public http(s) \
                                address that answers 200 without a redirect)";

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // 64:ff9b::/96 NAT64 and 2002::/16 6to4 embed IPv4 addresses; 2001:db8::/32
                // is documentation; ::/96 the old IPv4-compatible form.
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[..6].iter().all(|&x| x == 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10 carrier-grade NAT, 198.18.0.0/15 benchmarking, 240.0.0.0/4 reserved
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
        // 192.0.0.0/24 protocol assignments
        || (a == 192 && b == 0 && ip.octets()[2] == 0))
}

/// Resolves names with the system resolver and keeps only public addresses.
struct PublicOnly {
    allow: fn(IpAddr) -> bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for image URLs.
#[derive(Clone)]
pub struct ImageFetcher {
    http: reqwest::Client,
    allow: fn(IpAddr) -> bool,
}

impl ImageFetcher {
    /// A client that reaches only public addresses and gives up on a URL after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_filter(timeout, is_public)
    }

    fn with_filter(timeout: Duration, allow: fn(IpAddr) -> bool) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly { allow }))
            .build()?;
        Ok(Self { http, allow })
    }

    /// The body of `url`, at most `limit` bytes.
    pub async fn fetch(&self, url: &str, limit: usize) -> Result<Vec<u8>, ApiError> {
        match self.try_fetch(url, limit).await {
            Ok(bytes) => Ok(bytes),
            Err(Failure::TooLarge) => Err(ApiError::TooLarge(format!(
                "an image URL's body is larger than {limit} bytes"
            ))),
            Err(Failure::Refused(why)) => {
                // The reason stays in the server's log; the client learns nothing of the network.
                tracing::info!(%url, %why, "image URL refused");
                Err(ApiError::BadRequest(FETCH_FAILED.into()))
            }
        }
    }

    async fn try_fetch(&self, url: &str, limit: usize) -> Result<Vec<u8>, Failure> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Failure::Refused(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::Refused("not http(s)".into()));
        }
        // A literal address never reaches the resolver: check it here.
        let host = parsed
            .host_str()
            .ok_or_else(|| Failure::Refused("no host".into()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !(self.allow)(ip)
        {
            return Err(Failure::Refused(format!("{ip} is not public")));
        }
        let mut response = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| Failure::Refused(e.to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(Failure::Refused(format!("answered {}", response.status())));
        }
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Failure::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::Refused(e.to_string()))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > limit {
                return Err(Failure::TooLarge);
            }
        }
        Ok(bytes)
    }
}

enum Failure {
    TooLarge,
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = private.parse().expect("an address");
            assert!(!is_public(ip), "{private} must not count as public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} is public");
        }
    }

    /// A loopback HTTP server that answers every request with `response` and counts them.
    async fn serve(response: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn loopback_urls_are_refused_before_any_request_with_one_message() {
        let (addr, hits) = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let fetcher = ImageFetcher::new(Duration::from_secs(5)).expect("client");
        for url in [
            format!("http://127.0.0.1:{}/a.png", addr.port()),
            format!("http://localhost:{}/a.png", addr.port()),
            format!("http://[::ffff:127.0.0.1]:{}/a.png", addr.port()),
            // A closed port must read the same as a refused address.
            "http://127.0.0.1:1/a.png".to_owned(),
        ] {
            let err = fetcher.fetch(&url, 1 << 20).await.expect_err("refused");
            assert_eq!(err.to_string(), FETCH_FAILED, "{url}");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "no request reached loopback"
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target, target_hits) = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let redirect: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/secret\r\n\
                 content-length: 0\r\n\r\n",
                target.port()
            )
            .into_boxed_str(),
        );
        let (first, first_hits) = serve(redirect).await;
        // Loopback is let through for this test only, so the first hop can answer.
        let fetcher = ImageFetcher::with_filter(Duration::from_secs(5), |_| true).expect("client");
        let err = fetcher
            .fetch(&format!("http://127.0.0.1:{}/a.png", first.port()), 1 << 20)
            .await
            .expect_err("a redirect is refused");
        assert_eq!(err.to_string(), FETCH_FAILED);
        assert_eq!(first_hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            target_hits.load(Ordering::SeqCst),
            0,
            "the redirect was not followed"
        );
        // And the same client does fetch a plain 200.
        let body = fetcher
            .fetch(
                &format!("http://127.0.0.1:{}/b.png", target.port()),
                1 << 20,
            )
            .await
            .expect("fetched");
        assert_eq!(body, b"ok");
    }
}
