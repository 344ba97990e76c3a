"""The server as a process: its configuration, the application it builds, the command line."""
