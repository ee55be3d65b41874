# C types for uuid7_py.py, compiled into obscura._speedups.uuid7_c (single-source twin, style.md §4).
# Only declarations live here; the algorithm is in uuid7_py.py.
cimport cython

cdef Py_ssize_t _POOL_BYTES
cdef unsigned long long _COUNTER_MAX
cdef object _pack_u64_pair
cdef object _SAFE_UNKNOWN
cdef object _UUID
cdef object _new_object
cdef object _set_slot

cdef bytes _pool
cdef Py_ssize_t _pool_pos
cdef long long _last_ms
cdef unsigned long long _counter
cdef unsigned long long _high
cdef unsigned long long _low
cdef object _time_ns

@cython.locals(pos=Py_ssize_t, i=Py_ssize_t, value="unsigned long long")
cdef unsigned long long _random_bits(Py_ssize_t count) except? 0xFFFFFFFFFFFFFFFF

@cython.locals(tail="unsigned long long")
cdef int _advance(long long now_ms) except -1

cdef long long _now_ms() except? -1

@cython.locals(value=object)
cpdef object _int_at(long long now_ms)

cpdef object uuid7_int()

cpdef bytes uuid7_bytes()

@cython.locals(value=object, result=object)
cpdef object uuid7()
