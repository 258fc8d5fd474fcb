//! A one-request HTTP/2 prior-knowledge (h2c) client with hyper, for tests that need to set
//! many request fields or count the response's, which nghttp's command line cannot do.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What an h2c `GET` got: status, number of response header fields, body.
pub type H2cAnswer = (u16, usize, String);

/// `GET target` over h2c to `addr` with `fields` as extra request fields; `None` when zoo
/// refused the stream (a reset is how an h2 server refuses a header list it will not take).
pub fn get(addr: SocketAddr, target: &str, fields: &[(String, String)]) -> Option<H2cAnswer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(4 * 1024 * 1024)
                .handshake(TokioIo::new(stream))
                .await
                .expect("h2 handshake with zoo");
        tokio::spawn(connection);
        let mut request = hyper::Request::get(format!("http://zoo.test{target}"));
        for (name, value) in fields {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Empty::<bytes::Bytes>::new()).unwrap();
        let exchange = async {
            let response = sender.send_request(request).await.ok()?;
            let status = response.status().as_u16();
            let count = response.headers().len();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, count, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("an h2 answer in time")
    })
}
