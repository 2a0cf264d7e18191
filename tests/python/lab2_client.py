"""The course's lab #2 client (seeds: "TCP Client Socket"), as a student writes it.

Usage: lab2_client.py PORT NAME STUDENT_ID GITHUB
Connects, prints the client id the server assigns, sends the student's data as a
pickled dict, prints the server's acknowledgment, and closes.
"""
import pickle
import socket
import sys

MAX_MEM_ALLOC = 4096

port, name, student_id, github = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
clientsocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    clientsocket.connect(("127.0.0.1", port))
except ConnectionRefusedError:
    print("the server is not running")
    sys.exit(2)

serialized_data = clientsocket.recv(MAX_MEM_ALLOC)
deserialized_data = pickle.loads(serialized_data)
clientid = deserialized_data['clientid']
print("Assigned client id by server: ", clientid)

data = {'name': name, 'student_id': student_id, 'github': github,
        'email': github + "@example.edu"}
clientsocket.send(pickle.dumps(data))

ack = pickle.loads(clientsocket.recv(MAX_MEM_ALLOC))
print("Server says:", ack)
clientsocket.close()
sys.exit(0 if ack.get('ack') is True else 1)
