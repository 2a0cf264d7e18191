"""Two pickles that would run `touch MARKER` on a server that unpickles with pickle.loads:
one hand-written with GLOBAL and REDUCE, one made by pickle.dumps of an object whose
__reduce__ names os.system. Prints the server's answer to each.

Usage: malicious_pickle.py PORT MARKER
"""
import os
import pickle
import socket
import sys

port, marker = int(sys.argv[1]), sys.argv[2]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))


by_hand = b"cos\nsystem\n(V" + ("touch " + marker).encode() + b"\ntR."
by_reduce = pickle.dumps(Exploit())

s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
print("welcome", pickle.load(f))
refused = 0
for payload in (by_hand, by_reduce):
    s.sendall(payload)
    answer = pickle.load(f)
    print("answer", answer)
    if answer.get("ok") is False and answer["error"]["code"] == "bad_request":
        refused += 1
s.sendall(pickle.dumps({"op": "ping", "id": 1}))
print("still served", pickle.load(f))
s.close()
sys.exit(0 if refused == 2 else 1)
