//! The benchmark yardstick: a bare Pingora service that answers every request with a
//! 302 to a fixed URL and records nothing. `clickstamp`'s `/go` is compared against it
//! (and against nginx `return 302`) by `bench/run`.
//!
//! ```sh
//! cargo run --release -p clickstamp --example bare_302 -- 127.0.0.1:18081 2
//! ```

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::{Error, ErrorType, Result};

// The same allocator as the clickstamp binary, so the comparison measures clickstamp's
// own work, not an allocator difference.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare302;

#[async_trait]
impl ProxyHttp for Bare302 {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let mut resp = ResponseHeader::build(302, Some(3))?;
        resp.insert_header("Location", "https://network.example/offer?a=1&s2=0")?;
        resp.insert_header("Cache-Control", "no-store")?;
        resp.insert_header("Content-Length", "0")?;
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::explain(
            ErrorType::InternalError,
            "bare_302 never proxies",
        ))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let mut conf = ServerConf::new().expect("default server conf");
    conf.threads = threads;
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Bare302);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever()
}
