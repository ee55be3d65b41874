# C types for wire_py.py, compiled into obscura._speedups.wire_c (single-source twin, style.md §4).
# Only declarations live here; the algorithm is in wire_py.py.
cimport cython

cdef object _UINT64_LIMIT
cdef object _INT64_MIN
cdef tuple _ONE_BYTE_VARINTS

cdef object _as_byte_buffer(object data)
cdef object _to_uint64(object value)


cdef class WireReader:
    cdef const unsigned char[:] _view
    cdef Py_ssize_t _end
    cdef Py_ssize_t _pos

    cpdef bint at_end(self)

    cpdef seek(self, pos)

    @cython.locals(view="const unsigned char[:]", pos=Py_ssize_t, end=Py_ssize_t, byte="unsigned char", result="unsigned long long",
                   part="unsigned long long", shift=int)
    cpdef unsigned long long read_varint(self) except? 0xFFFFFFFFFFFFFFFF

    @cython.locals(start=Py_ssize_t, tag="unsigned long long", field_number=int, wire_type=int)
    cpdef tuple read_tag(self)

    @cython.locals(length="unsigned long long", remaining="unsigned long long", start=Py_ssize_t)
    cpdef tuple read_length_delimited(self)

    cpdef skip_field(self, wire_type, field_number=*)

    cdef int _advance(self, Py_ssize_t count) except -1

    @cython.locals(open_groups=list, number=int, wire_type=int)
    cdef _skip_group(self, field_number)


@cython.locals(reader=WireReader)
cpdef tuple decode_varint(data, pos)

@cython.locals(reader=WireReader)
cpdef tuple read_tag(data, pos)

@cython.locals(reader=WireReader)
cpdef tuple read_length_delimited(data, pos)

@cython.locals(reader=WireReader)
cpdef Py_ssize_t skip_field(data, pos, wire_type, field_number=*) except? -1

cpdef write_varint(buf, value)

cdef int _check_bytearray(object buf) except -1

cdef _append_varint(bytearray buf, unsigned long long v)

@cython.locals(v="unsigned long long", out=bytearray)
cpdef bytes encode_varint(value)

cpdef write_bytes_field(buf, field_number, value)

@cython.locals(out=bytearray)
cpdef bytes encode_bytes_field(field_number, value)
