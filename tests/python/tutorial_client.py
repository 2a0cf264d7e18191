"""The tutorial's client (seeds: "Creating a TCP server-client Connection").

Usage: tutorial_client.py PORT
"""
from socket import *
import sys

HOST = '127.0.0.1'
PORT = int(sys.argv[1])
SERVER = (HOST, PORT)

client = socket(AF_INET, SOCK_STREAM)
client.connect(SERVER)

msg_in = client.recv(2048).decode()
print('Server:', msg_in)

msg_out = 'Hello Server!'
client.send(msg_out.encode())

client.close()
