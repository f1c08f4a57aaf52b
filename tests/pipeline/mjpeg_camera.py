"""A camera on 127.0.0.1 for the tests: MJPEG over HTTP (multipart/x-mixed-replace), which
OpenCV's FFmpeg reads like an IP camera. ``outage(seconds)`` takes it away (connections cut,
new ones refused) and brings it back; ``stall()`` keeps connections open but sends nothing."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "rtsegframe"


class MjpegCamera:
    def __init__(self, fps: float = 25.0, size=(120, 160)):
        self.fps, self.size = fps, size
        self.frames_sent = 0
        self.down_until = 0.0  # monotonic time before which the camera is away
        self.stalled = threading.Event()
        self._stop = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if time.monotonic() < camera.down_until:
                    self.connection.close()  # refused while away
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                try:
                    while not camera._stop.is_set():
                        if time.monotonic() < camera.down_until:
                            return  # the camera went away: cut the connection
                        if camera.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        jpg = camera._jpeg()
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode())
                        self.wfile.write(jpg + b"\r\n")
                        camera.frames_sent += 1
                        time.sleep(1.0 / camera.fps)
                except (BrokenPipeError, ConnectionResetError, socket.error):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _jpeg(self) -> bytes:
        h, w = self.size
        img = np.full((h, w, 3), (self.frames_sent * 7) % 256, np.uint8)
        cv2.putText(img, str(self.frames_sent), (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        return cv2.imencode(".jpg", img)[1].tobytes()

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
