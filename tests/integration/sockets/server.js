// Answers "node PID" on the Unix socket zoo names in SOCKET (and listens on no port).
const http = require("http");
http
  .createServer((req, res) => res.end(`node ${process.pid} ${req.url}\n`))
  .listen(process.env.SOCKET);
