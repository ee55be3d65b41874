# C types for frames_py.py, compiled into obscura._speedups.frames_c (single-source twin, style.md §4).
# Only declarations live here; the algorithm is in frames_py.py. Public constants (KIND_*) stay
# Python objects: a cdef global would vanish from the module's attributes.
cimport cython

cdef int _DEPTH_LIMIT
cdef object _UINT64_MASK
cdef unsigned long long _SIGN_EXTEND
cdef Py_ssize_t _SIZE_CAP
cdef tuple _SUBMISSION_FIELDS

cdef object _buffer(object data)
cdef bytes _as_bytes(object data)


cdef class _Reader:
    cdef bytes _data
    cdef const unsigned char* _p  # borrowed from _data, which the reader keeps alive
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end

    @cython.locals(p="const unsigned char*", pos=Py_ssize_t, end=Py_ssize_t, byte="unsigned char",
                   result="unsigned long long", part="unsigned long long", shift=int)
    cdef unsigned long long varint(self) except? 0xFFFFFFFFFFFFFFFF

    @cython.locals(pos=Py_ssize_t, byte="unsigned char", tag="unsigned int")
    cdef unsigned int tag(self) except 0

    @cython.locals(pos=Py_ssize_t, tag="unsigned long long")
    cdef unsigned int group_tag(self) except? 0xFFFFFFFF

    @cython.locals(start=Py_ssize_t, size="unsigned long long", remaining="unsigned long long")
    cdef Py_ssize_t length(self) except -1

    @cython.locals(wire_type="unsigned int", count=Py_ssize_t)
    cdef skip(self, unsigned int tag, int depth)

    @cython.locals(open_groups=list, wire_type="unsigned int", tag="unsigned int")
    cdef skip_group(self, unsigned int field_number, int depth)

    @cython.locals(outer=Py_ssize_t)
    cdef walk(self, Py_ssize_t end, int depth)


@cython.locals(reader=_Reader, field=int, tag="unsigned int", end=Py_ssize_t)
cpdef tuple decode_client_frame(data)

@cython.locals(outer=Py_ssize_t, field=int, tag="unsigned int", stop=Py_ssize_t)
cdef _read_ack(_Reader reader, Py_ssize_t end, list ids)

@cython.locals(outer=Py_ssize_t, tag="unsigned int")
cdef _check_envelope_batch(_Reader reader, Py_ssize_t end)

@cython.locals(reader=_Reader, submissions=list, field=int, tag="unsigned int")
cpdef list decode_send_message_request(data)

@cython.locals(outer=Py_ssize_t, values=list, field=int, tag="unsigned int",
               stop=Py_ssize_t)
cdef tuple _read_submission(_Reader reader, Py_ssize_t end)


cdef int _varint_size(unsigned long long value)
cdef Py_ssize_t _put_varint(bytearray out, Py_ssize_t pos, unsigned long long value) except -1
cdef Py_ssize_t _field_size(Py_ssize_t size)
@cython.locals(size=Py_ssize_t)
cdef Py_ssize_t _put_bytes_field(bytearray out, window, Py_ssize_t pos, unsigned char tag, view) except -1
cdef _append_varint(bytearray buf, unsigned long long value)

cdef object _uint64(object value)
@cython.locals(small="long long")
cdef unsigned long long _int32_as_uint64(object value) except? 0xFFFFFFFFFFFFFFFF

@cython.locals(timestamp="unsigned long long", size=Py_ssize_t, out=bytearray, pos=Py_ssize_t)
cpdef bytes encode_envelope(id16, sender_id16, timestamp_ms, message, sender_device_id16)

@cython.locals(views=list, body_size=Py_ssize_t, size=Py_ssize_t, out=bytearray, pos=Py_ssize_t)
cpdef bytes encode_envelope_batch_frame(envelopes)

@cython.locals(requested=object, limit=Py_ssize_t, batches=list, batch=list, total=Py_ssize_t,
               size=Py_ssize_t)
cpdef list split_batches(envelopes, max_bytes)

@cython.locals(count_varint="unsigned long long", threshold_varint="unsigned long long",
               body_size=Py_ssize_t, out=bytearray, pos=Py_ssize_t)
cpdef bytes encode_prekey_status_frame(count, threshold)

@cython.locals(out=bytearray, item=bytearray, code_varint="unsigned long long", item_size=Py_ssize_t,
               pos=Py_ssize_t, text=bytes)
cpdef bytes encode_send_message_response(failures)
