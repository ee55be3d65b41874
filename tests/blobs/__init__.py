"""Tests of obscura.blobs: the BlobStore contract on every backend."""
