# The container test's stand-in for https://google.com (nothing in the test may reach the
# internet): answers every GET with the path and query it received, so the test sees what
# zoo's `/google` route (strip_prefix = true) forwards.
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"google stand-in\r\n[{self.path}]\r\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
