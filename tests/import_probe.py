"""Pieces of the subprocess probes that check an import reads no environment variable (modules 16 and 18):
RECORD_ENV defines a recorder of every os.environ key read; ENV_ON / ENV_OFF switch it around the imports
under test; the probe then reports the list `read`."""

RECORD_ENV = r"""
import os
read = []
orig_getitem, orig_get = type(os.environ).__getitem__, type(os.environ).get
def getitem(self, key):
    read.append(key); return orig_getitem(self, key)
def get(self, key, default=None):
    read.append(key); return orig_get(self, key, default)
"""
ENV_ON = "type(os.environ).__getitem__, type(os.environ).get = getitem, get\n"
ENV_OFF = "type(os.environ).__getitem__, type(os.environ).get = orig_getitem, orig_get\n"
