import json, socket, struct, sys

def send(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)

def recv(sock):
    header = sock.recv(4, socket.MSG_WAITALL)  # MSG_WAITALL: exactly 4 bytes
    if len(header) < 4: raise ConnectionError("server closed the connection")
    (length,) = struct.unpack(">I", header)
    return json.loads(sock.recv(length, socket.MSG_WAITALL))

port = int(sys.argv[1]) if len(sys.argv) > 1 else 12000
sock = socket.create_connection(("127.0.0.1", port))
print(recv(sock))  # {'event': 'welcome', 'client_id': 1, ...}
send(sock, {"id": 1, "op": "hello", "name": "nina"}); print(recv(sock))
send(sock, {"id": 2, "op": "users"}); print(recv(sock))
send(sock, {"id": 3, "op": "bye"}); print(recv(sock))
