"""Ingest: files -> reads that land directly in pinned memory -> chunks for the megakernel.

``uring`` is io_uring through raw syscalls, ``reader`` the interface the stream pipeline uses
(``open_reader``), ``fallback`` the thread-pool ``preadv`` reader used where io_uring is not.
"""
