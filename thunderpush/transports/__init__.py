"""How bytes reach and leave the hub: the front door, HTTP, websockets, fan-out and SockJS."""
