// Answers "node PID" on the Unix socket zoo names in SOCKET, else on its PORT (a reload may
// move it from one to the other).
const http = require("http");
const server = http.createServer((req, res) => res.end(`node ${process.pid} ${req.url}\n`));
if (process.env.SOCKET) {
  server.listen(process.env.SOCKET);
} else {
  server.listen(Number(process.env.PORT), "127.0.0.1");
}
