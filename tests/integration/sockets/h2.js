// Answers "h2 VERSION PATH" over HTTP/2 with prior knowledge (h2c) on the Unix socket zoo
// names in SOCKET.
const http2 = require("http2");
http2
  .createServer((req, res) => res.end(`h2 ${req.httpVersion} ${req.url}\n`))
  .listen(process.env.SOCKET);
