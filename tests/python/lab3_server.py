"""A lab #3 server (seeds: "TCP Server Socket"), as a student writes it.

Binds 127.0.0.1 on a free port and prints it, accepts one client, sends it
{'clientid': <its port>}, receives one pickled dict, prints it, acknowledges it and
closes the connection.
"""
import pickle
import socket

MAX_ALLOC_MEM = 4096

serversocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
serversocket.bind(("127.0.0.1", 0))
serversocket.listen(10)
print("port", serversocket.getsockname()[1], flush=True)

clienthandler, addr = serversocket.accept()
client_id = addr[1]
clienthandler.send(pickle.dumps({'clientid': client_id}))
data_from_client = clienthandler.recv(MAX_ALLOC_MEM)
print("from client", client_id, pickle.loads(data_from_client), flush=True)
clienthandler.send(pickle.dumps({'ack': True}))
clienthandler.close()
serversocket.close()
