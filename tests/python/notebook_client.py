"""The client for the threaded-server notebook (seeds: "TCP Socket Server"): it sends
`request`, reads the answer, then sends `close` and waits for the server to close.

Usage: notebook_client.py PORT
"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")


def reply():
    """The status line answering the last message; event lines are printed on the way."""
    while True:
        line = f.readline().decode().rstrip("\r\n")
        print("from server", line)
        if line.startswith(("+OK", "-ERR")):
            return line


s.send(b"request\n")
first = reply()
s.send(b"close\n")
second = reply()
rest = f.read()
print("closed by server:", rest == b"")
sys.exit(0 if first.startswith("-ERR unknown_op") and second.startswith("+OK") and rest == b"" else 1)
