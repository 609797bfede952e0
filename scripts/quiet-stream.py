# A Companies House-shaped stream on 127.0.0.1:18181 that is live and quiet:
# the response head, then a heartbeat newline every 30 s. For measuring what
# feedtop writes to a terminal while nothing happens (scripts/term-bytes.sh):
#   python3 scripts/quiet-stream.py &
#   CH_STREAMING_API_KEY=x feedtop --config /dev/null --ch-url http://127.0.0.1:18181
import socket, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18181)); s.listen(5)
def serve(c):
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        while True:
            c.sendall(b"1\r\n\n\r\n"); time.sleep(30)
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
