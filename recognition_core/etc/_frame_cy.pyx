# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Compiled RSU frame decoder: checks, unescaping and field layout in C, records built directly.

It decodes what the pure-Python reference (``recognition_core.etc.decode``) decodes, into equal
``Frame`` values. Whatever it does not take on itself (a frame that fails a check or a length, an
error-only frame, a plate that is not a plain GA 36 plate in canonical GB2312 form) goes to the reference, which gives
the same result or the same ``FrameError``; so the two can differ only in speed.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeASCII


cdef extern from "Python.h":
    object PyType_GenericAlloc(type cls, Py_ssize_t nitems)
    void PyObject_GC_UnTrack(void* obj)
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


from crosspark.identity import PlateColor
from crosspark.plate import PROVINCES
from recognition_core.etc.decode import decode as _reference_decode
from recognition_core.etc.records import (
    CardFile, CardInfo, Frame, FrameError, FrameType, Framing, Heartbeat, ObuInfo, RsuStatus,
    TransactionResult, Vehicle, VehicleFile, VehicleInfo, VehicleSource,
)

cdef enum:
    MAX_FRAME = 4096

cdef unsigned short CRC_TABLE[256]
cdef signed char PROVINCE_OF[65536]   # GB2312 code (hi << 8 | lo) -> index in PROVINCES, or -1
cdef unsigned char LETTER[256]        # issuing-authority letters: A-Z without I, O
cdef unsigned char ALNUM[256]         # LETTER plus digits
cdef unsigned char DIGIT[256]


cdef void _init_tables():
    cdef int i, j
    cdef unsigned int crc
    for i in range(256):
        crc = i
        for j in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        CRC_TABLE[i] = crc
        LETTER[i] = 0
        ALNUM[i] = 0
        DIGIT[i] = 0
    for i in range(65536):
        PROVINCE_OF[i] = -1
    for i, ch in enumerate(PROVINCES):
        code = ch.encode("gb2312")
        PROVINCE_OF[code[0] << 8 | code[1]] = i
    for ch in bytearray(b"ABCDEFGHJKLMNPQRSTUVWXYZ"):
        LETTER[ch] = 1
        ALNUM[ch] = 1
    for ch in bytearray(b"0123456789"):
        ALNUM[ch] = 1
        DIGIT[ch] = 1


_init_tables()

cdef list _PROVINCE_STR = list(PROVINCES)
cdef list _COLORS = [PlateColor.from_etc_code(c) if c in (0, 1, 2, 3, 4, 5, 6, 9) else None for c in range(10)]
cdef list _FRAMINGS = [Framing.LANE, Framing.ITS, Framing.GENVICT]
cdef dict _TYPES = {t.value: t for t in FrameType}
cdef object _SRC_B3 = VehicleSource.B3_SHORT
cdef object _SRC_EF01 = VehicleSource.VEHICLE_FILE
cdef object _SRC_0015 = VehicleSource.CARD_FILE


cdef inline object _new(type cls):
    """A new instance with every slot empty (what ``object.__new__(cls)`` gives), left out of the
    cycle collector: records hold only bytes, str, int, enum members and other records, so they
    can never be part of a cycle, and a batch of them would otherwise make every collection walk
    them all."""
    obj = PyType_GenericAlloc(cls, 0)
    PyObject_GC_UnTrack(<void*>obj)
    return obj

cdef enum:
    LANE = 0
    ITS = 1
    GENVICT = 2
    AUTO = -1


cdef struct Raw:
    int framing
    int frame_type
    int seq
    const unsigned char* payload
    Py_ssize_t size


# -- checks ---------------------------------------------------------------------------------------

cdef inline unsigned short _crc(const unsigned char* d, Py_ssize_t n) noexcept nogil:
    cdef unsigned short crc = 0xFFFF
    cdef Py_ssize_t i
    for i in range(n):
        crc = (crc >> 8) ^ CRC_TABLE[(crc ^ d[i]) & 0xFF]
    return crc ^ 0xFFFF


cdef inline unsigned int _be(const unsigned char* d, int n) noexcept nogil:
    cdef unsigned int v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | d[i]
    return v


cdef bint _lane(const unsigned char* d, Py_ssize_t n, unsigned char* scratch, Raw* out) noexcept nogil:
    # FF FF · escaped(RSCTL TYPE DATA BCC) · FF; FE 01 -> FF, FE 00 -> FE
    cdef Py_ssize_t i = 2, m = 0, end = n - 1
    cdef unsigned char b, x = 0
    if n < 6 or d[0] != 0xFF or d[1] != 0xFF or d[end] != 0xFF:
        return False
    while i < end:
        b = d[i]
        if b == 0xFE:
            if i + 1 >= end or d[i + 1] > 1:
                return False
            b = 0xFE | d[i + 1]
            i += 2
        elif b == 0xFF:
            return False
        else:
            i += 1
        scratch[m] = b
        x ^= b
        m += 1
    if m < 3 or x != 0:  # XOR over RSCTL..DATA equals BCC  <=>  XOR over RSCTL..BCC is zero
        return False
    out.framing = LANE
    out.seq = scratch[0]
    out.frame_type = scratch[1]
    out.payload = scratch + 2
    out.size = m - 3
    return True


cdef bint _its(const unsigned char* d, Py_ssize_t n, Raw* out) noexcept nogil:
    # FF FF · VER(00) · SEQ · LEN(u32) · TYPE · DATA · CRC16 over VER..DATA
    cdef Py_ssize_t carried
    cdef unsigned int declared
    if n < 11 or d[0] != 0xFF or d[1] != 0xFF or d[2] != 0:
        return False
    carried = n - 10
    declared = _be(d + 4, 4)
    if declared != <unsigned int>carried and declared != <unsigned int>(carried - 1):
        return False
    if _crc(d + 2, n - 4) != <unsigned short>_be(d + n - 2, 2):
        return False
    out.framing = ITS
    out.seq = d[3]
    out.frame_type = d[8]
    out.payload = d + 9
    out.size = n - 11
    return True


cdef bint _genvict(const unsigned char* d, Py_ssize_t n, Raw* out) noexcept nogil:
    # FF FF · LEN(u16) · TYPE · DATA · CRC16 over LEN..DATA
    cdef Py_ssize_t carried
    cdef unsigned int declared
    if n < 7 or d[0] != 0xFF or d[1] != 0xFF:
        return False
    carried = n - 6
    declared = _be(d + 2, 2)
    if declared != <unsigned int>carried and declared != <unsigned int>(carried - 1):
        return False
    if _crc(d + 2, n - 4) != <unsigned short>_be(d + n - 2, 2):
        return False
    out.framing = GENVICT
    out.seq = 0
    out.frame_type = d[4]
    out.payload = d + 5
    out.size = n - 7
    return True


cdef bint _unwrap(const unsigned char* d, Py_ssize_t n, int framing, unsigned char* scratch, Raw* out) noexcept nogil:
    """Check one frame; with AUTO exactly one framing must pass."""
    cdef Raw tried
    cdef int passed = 0
    if n > MAX_FRAME:
        return False
    if framing == LANE:
        return _lane(d, n, scratch, out)
    if framing == ITS:
        return _its(d, n, out)
    if framing == GENVICT:
        return _genvict(d, n, out)
    # Only frames of a known type count when several framings pass (its and genvict checksum the
    # same bytes); anything else goes to the reference, which gives the error.
    if _lane(d, n, scratch, &tried) and _known(LANE, tried.frame_type):
        out[0] = tried
        passed += 1
    if _its(d, n, &tried) and _known(ITS, tried.frame_type):
        out[0] = tried
        passed += 1
    if _genvict(d, n, &tried) and _known(GENVICT, tried.frame_type):
        out[0] = tried
        passed += 1
    return passed == 1


cdef inline bint _known(int framing, int frame_type) noexcept nogil:
    if frame_type < 0xB0 or frame_type > 0xB5:
        return False
    return not (framing == GENVICT and frame_type == 0xB3)


# -- plates ---------------------------------------------------------------------------------------

cdef object _canonical_plate(const unsigned char* p):
    """The plate text when the 12-byte field holds a plain valid GA 36 plate in canonical form
    (province, upper-case ASCII without I/O, zero padding; no special suffix); otherwise None and
    the reference decides (suffixes carry extra rules, e.g. 港/澳 plates are 粤Z…)."""
    cdef int province = PROVINCE_OF[p[0] << 8 | p[1]]
    cdef int used = 12, i
    if province < 0 or not LETTER[p[2]]:
        return None
    while used > 0 and p[used - 1] == 0:
        used -= 1
    if used != 8 and used != 9:
        return None
    for i in range(3, used):
        if not ALNUM[p[i]]:
            return None
    if used == 9:  # new-energy: [DF][alnum][0-9]{4} (small) or [0-9]{5}[DF] (large)
        if p[3] == b'D' or p[3] == b'F':
            for i in range(5, 9):
                if not DIGIT[p[i]]:
                    return None
        elif p[8] == b'D' or p[8] == b'F':
            for i in range(3, 8):
                if not DIGIT[p[i]]:
                    return None
        else:
            return None
    return _PROVINCE_STR[province] + PyUnicode_DecodeASCII(<const char*>p + 2, used - 2, NULL)


cdef inline bint _zero(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i]:
            return False
    return True


cdef inline bytes _b(const unsigned char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


# Records are frozen, slotted dataclasses. A new instance (object.__new__) has every slot empty;
# filling a slot is what the slot's member descriptor does on ``object.__setattr__``, done here
# directly at the slot's offset, looked up once at import.
cdef Py_ssize_t _offset(type cls, str name) except -1:
    descr = cls.__dict__[name]
    if type(descr).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*>descr).d_member.offset


cdef inline void _put(object obj, Py_ssize_t offset, object value):
    cdef PyObject** slot = <PyObject**>((<char*><PyObject*>obj) + offset)
    cdef PyObject* old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject*>value
    Py_XDECREF(old)


cdef Py_ssize_t O_CardFile_card_number = _offset(CardFile, "card_number")
cdef Py_ssize_t O_CardFile_card_type = _offset(CardFile, "card_type")
cdef Py_ssize_t O_CardFile_color_code = _offset(CardFile, "color_code")
cdef Py_ssize_t O_CardFile_expiry = _offset(CardFile, "expiry")
cdef Py_ssize_t O_CardFile_issuer = _offset(CardFile, "issuer")
cdef Py_ssize_t O_CardFile_network = _offset(CardFile, "network")
cdef Py_ssize_t O_CardFile_plate_raw = _offset(CardFile, "plate_raw")
cdef Py_ssize_t O_CardFile_rest = _offset(CardFile, "rest")
cdef Py_ssize_t O_CardFile_start = _offset(CardFile, "start")
cdef Py_ssize_t O_CardFile_user_type = _offset(CardFile, "user_type")
cdef Py_ssize_t O_CardFile_vehicle_class = _offset(CardFile, "vehicle_class")
cdef Py_ssize_t O_CardFile_version = _offset(CardFile, "version")
cdef Py_ssize_t O_CardInfo_balance = _offset(CardInfo, "balance")
cdef Py_ssize_t O_CardInfo_card_file = _offset(CardInfo, "card_file")
cdef Py_ssize_t O_CardInfo_card_id = _offset(CardInfo, "card_id")
cdef Py_ssize_t O_CardInfo_card_present = _offset(CardInfo, "card_present")
cdef Py_ssize_t O_CardInfo_card_type = _offset(CardInfo, "card_type")
cdef Py_ssize_t O_CardInfo_error = _offset(CardInfo, "error")
cdef Py_ssize_t O_CardInfo_file_0019 = _offset(CardInfo, "file_0019")
cdef Py_ssize_t O_CardInfo_obu_id = _offset(CardInfo, "obu_id")
cdef Py_ssize_t O_CardInfo_obu_status = _offset(CardInfo, "obu_status")
cdef Py_ssize_t O_CardInfo_obu_type = _offset(CardInfo, "obu_type")
cdef Py_ssize_t O_CardInfo_physical_card_type = _offset(CardInfo, "physical_card_type")
cdef Py_ssize_t O_CardInfo_rest = _offset(CardInfo, "rest")
cdef Py_ssize_t O_CardInfo_system_info = _offset(CardInfo, "system_info")
cdef Py_ssize_t O_CardInfo_trans_type = _offset(CardInfo, "trans_type")
cdef Py_ssize_t O_CardInfo_vehicle_file = _offset(CardInfo, "vehicle_file")
cdef Py_ssize_t O_Frame_frame_type = _offset(Frame, "frame_type")
cdef Py_ssize_t O_Frame_framing = _offset(Frame, "framing")
cdef Py_ssize_t O_Frame_record = _offset(Frame, "record")
cdef Py_ssize_t O_Frame_seq = _offset(Frame, "seq")
cdef Py_ssize_t O_Frame_vehicle = _offset(Frame, "vehicle")
cdef Py_ssize_t O_Heartbeat_raw = _offset(Heartbeat, "raw")
cdef Py_ssize_t O_ObuInfo_antenna = _offset(ObuInfo, "antenna")
cdef Py_ssize_t O_ObuInfo_contract_type = _offset(ObuInfo, "contract_type")
cdef Py_ssize_t O_ObuInfo_contract_version = _offset(ObuInfo, "contract_version")
cdef Py_ssize_t O_ObuInfo_device_type = _offset(ObuInfo, "device_type")
cdef Py_ssize_t O_ObuInfo_equipment = _offset(ObuInfo, "equipment")
cdef Py_ssize_t O_ObuInfo_error = _offset(ObuInfo, "error")
cdef Py_ssize_t O_ObuInfo_expires = _offset(ObuInfo, "expires")
cdef Py_ssize_t O_ObuInfo_issued = _offset(ObuInfo, "issued")
cdef Py_ssize_t O_ObuInfo_issuer = _offset(ObuInfo, "issuer")
cdef Py_ssize_t O_ObuInfo_obu_id = _offset(ObuInfo, "obu_id")
cdef Py_ssize_t O_ObuInfo_obu_status = _offset(ObuInfo, "obu_status")
cdef Py_ssize_t O_ObuInfo_serial = _offset(ObuInfo, "serial")
cdef Py_ssize_t O_ObuInfo_tamper = _offset(ObuInfo, "tamper")
cdef Py_ssize_t O_RsuStatus_psam_auth = _offset(RsuStatus, "psam_auth")
cdef Py_ssize_t O_RsuStatus_raw = _offset(RsuStatus, "raw")
cdef Py_ssize_t O_RsuStatus_rsu_switch = _offset(RsuStatus, "rsu_switch")
cdef Py_ssize_t O_RsuStatus_status = _offset(RsuStatus, "status")
cdef Py_ssize_t O_TransactionResult_error = _offset(TransactionResult, "error")
cdef Py_ssize_t O_TransactionResult_obu_id = _offset(TransactionResult, "obu_id")
cdef Py_ssize_t O_TransactionResult_obu_type = _offset(TransactionResult, "obu_type")
cdef Py_ssize_t O_TransactionResult_psam_id = _offset(TransactionResult, "psam_id")
cdef Py_ssize_t O_TransactionResult_rest = _offset(TransactionResult, "rest")
cdef Py_ssize_t O_TransactionResult_time_bcd = _offset(TransactionResult, "time_bcd")
cdef Py_ssize_t O_Vehicle_color = _offset(Vehicle, "color")
cdef Py_ssize_t O_Vehicle_color_code = _offset(Vehicle, "color_code")
cdef Py_ssize_t O_Vehicle_plate = _offset(Vehicle, "plate")
cdef Py_ssize_t O_Vehicle_plate_valid = _offset(Vehicle, "plate_valid")
cdef Py_ssize_t O_Vehicle_source = _offset(Vehicle, "source")
cdef Py_ssize_t O_Vehicle_user_type = _offset(Vehicle, "user_type")
cdef Py_ssize_t O_Vehicle_vehicle_class = _offset(Vehicle, "vehicle_class")
cdef Py_ssize_t O_VehicleFile_color_code = _offset(VehicleFile, "color_code")
cdef Py_ssize_t O_VehicleFile_plate_raw = _offset(VehicleFile, "plate_raw")
cdef Py_ssize_t O_VehicleFile_rest = _offset(VehicleFile, "rest")
cdef Py_ssize_t O_VehicleFile_user_type = _offset(VehicleFile, "user_type")
cdef Py_ssize_t O_VehicleFile_vehicle_class = _offset(VehicleFile, "vehicle_class")
cdef Py_ssize_t O_VehicleInfo_error = _offset(VehicleInfo, "error")
cdef Py_ssize_t O_VehicleInfo_obu_id = _offset(VehicleInfo, "obu_id")
cdef Py_ssize_t O_VehicleInfo_vehicle_file = _offset(VehicleInfo, "vehicle_file")


class _Fallback(Exception):
    pass


cdef object _vehicle(const unsigned char* plate, int color_code, int vclass, int user_type, object source):
    """A Vehicle from a canonical plate, or raise _Fallback (blank plates are handled by callers)."""
    cdef object text = _canonical_plate(plate)
    if text is None or color_code > 9 or _COLORS[color_code] is None:
        raise _Fallback()
    v = _new(Vehicle)
    _put(v, O_Vehicle_plate, text)
    _put(v, O_Vehicle_color, _COLORS[color_code])
    _put(v, O_Vehicle_color_code, color_code)
    _put(v, O_Vehicle_vehicle_class, vclass)
    _put(v, O_Vehicle_user_type, user_type)
    _put(v, O_Vehicle_plate_valid, True)
    _put(v, O_Vehicle_source, source)
    return v


cdef object _vehicle_file(const unsigned char* p, Py_ssize_t size):
    f = _new(VehicleFile)
    _put(f, O_VehicleFile_plate_raw, _b(p, 12))
    _put(f, O_VehicleFile_color_code, p[12] << 8 | p[13])
    _put(f, O_VehicleFile_vehicle_class, p[14])
    _put(f, O_VehicleFile_user_type, p[15])
    _put(f, O_VehicleFile_rest, _b(p + 16, size - 16))
    return f


cdef object _card_file(const unsigned char* p, Py_ssize_t size):
    f = _new(CardFile)
    _put(f, O_CardFile_issuer, _b(p, 8))
    _put(f, O_CardFile_card_type, p[8])
    _put(f, O_CardFile_version, p[9])
    _put(f, O_CardFile_network, _b(p + 10, 2))
    _put(f, O_CardFile_card_number, _b(p + 12, 8))
    _put(f, O_CardFile_start, _b(p + 20, 4))
    _put(f, O_CardFile_expiry, _b(p + 24, 4))
    _put(f, O_CardFile_plate_raw, _b(p + 28, 12))
    _put(f, O_CardFile_user_type, p[40])
    _put(f, O_CardFile_color_code, p[41])
    _put(f, O_CardFile_vehicle_class, p[42])
    _put(f, O_CardFile_rest, _b(p + 43, size - 43))
    return f


cdef object _place(const unsigned char* vf, Py_ssize_t vf_size, const unsigned char* cf, bint short_form):
    """EF01 names the vehicle unless it is absent or all zeros; then 0015 does."""
    if vf != NULL and not _zero(vf, vf_size):
        if _zero(vf, 12):
            return None
        return _vehicle(vf, vf[12] << 8 | vf[13], vf[14], vf[15], _SRC_B3 if short_form else _SRC_EF01)
    if cf != NULL:
        if _zero(cf + 28, 12):
            return None
        return _vehicle(cf + 28, cf[41], cf[42], cf[40], _SRC_0015)
    return None


# -- records --------------------------------------------------------------------------------------

cdef object _obu_info(const unsigned char* p, Py_ssize_t n, int framing):
    r = _new(ObuInfo)
    _put(r, O_ObuInfo_obu_id, _b(p, 4))
    _put(r, O_ObuInfo_error, p[4])
    if framing == ITS:
        _put(r, O_ObuInfo_antenna, p[5])
        _put(r, O_ObuInfo_device_type, p[6])
        _put(r, O_ObuInfo_issuer, _b(p + 7, 8))
        _put(r, O_ObuInfo_contract_type, p[15])
        _put(r, O_ObuInfo_contract_version, p[16])
        _put(r, O_ObuInfo_serial, _b(p + 17, 8))
        _put(r, O_ObuInfo_issued, _b(p + 25, 4))
        _put(r, O_ObuInfo_expires, _b(p + 29, 4))
        _put(r, O_ObuInfo_equipment, p[33])
        _put(r, O_ObuInfo_obu_status, p[34])
        _put(r, O_ObuInfo_tamper, p[35])
        return r
    cdef int at = 13
    _put(r, O_ObuInfo_issuer, _b(p + 5, 8))
    if n == 34:
        _put(r, O_ObuInfo_contract_type, p[13])
        _put(r, O_ObuInfo_contract_version, p[14])
        at = 15
    else:
        _put(r, O_ObuInfo_contract_type, None)
        _put(r, O_ObuInfo_contract_version, None)
    _put(r, O_ObuInfo_serial, _b(p + at, 8))
    _put(r, O_ObuInfo_issued, _b(p + at + 8, 4))
    _put(r, O_ObuInfo_expires, _b(p + at + 12, 4))
    _put(r, O_ObuInfo_equipment, p[at + 16])
    _put(r, O_ObuInfo_obu_status, p[at + 17] << 8 | p[at + 18])
    _put(r, O_ObuInfo_antenna, None)
    _put(r, O_ObuInfo_device_type, None)
    _put(r, O_ObuInfo_tamper, None)
    return r


cdef object _card_info(const unsigned char* p, Py_ssize_t n, int framing, int vf_size, int cf_size):
    r = _new(CardInfo)
    cdef const unsigned char* vf = NULL
    cdef const unsigned char* cf
    cdef Py_ssize_t at
    _put(r, O_CardInfo_obu_id, _b(p, 4))
    if framing == LANE:
        cf = p + 16
        _put(r, O_CardInfo_error, p[4])
        _put(r, O_CardInfo_card_type, p[5])
        _put(r, O_CardInfo_physical_card_type, p[6])
        _put(r, O_CardInfo_trans_type, p[7])
        _put(r, O_CardInfo_balance, _be(p + 8, 4))
        _put(r, O_CardInfo_card_id, _b(p + 12, 4))
        _put(r, O_CardInfo_card_file, _card_file(cf, cf_size))
        _put(r, O_CardInfo_file_0019, _b(cf + cf_size, 43))
        _put(r, O_CardInfo_vehicle_file, None)
        _put(r, O_CardInfo_obu_type, None)
        _put(r, O_CardInfo_card_present, None)
        _put(r, O_CardInfo_obu_status, None)
        _put(r, O_CardInfo_system_info, None)
        _put(r, O_CardInfo_rest, b"")
    elif framing == ITS:
        vf = p + 6
        at = 6 + vf_size
        cf = p + at + 4
        _put(r, O_CardInfo_error, p[4])
        _put(r, O_CardInfo_trans_type, p[5])
        _put(r, O_CardInfo_vehicle_file, _vehicle_file(vf, vf_size))
        _put(r, O_CardInfo_balance, _be(p + at, 4))
        _put(r, O_CardInfo_card_file, _card_file(cf, cf_size))
        _put(r, O_CardInfo_file_0019, _b(cf + cf_size, 43))
        _put(r, O_CardInfo_card_type, None)
        _put(r, O_CardInfo_physical_card_type, None)
        _put(r, O_CardInfo_card_id, None)
        _put(r, O_CardInfo_obu_type, None)
        _put(r, O_CardInfo_card_present, None)
        _put(r, O_CardInfo_obu_status, None)
        _put(r, O_CardInfo_system_info, None)
        _put(r, O_CardInfo_rest, b"")
    else:
        vf = p + 33
        cf = p + 112
        _put(r, O_CardInfo_error, None)
        _put(r, O_CardInfo_obu_type, p[4])
        _put(r, O_CardInfo_card_present, p[5])
        _put(r, O_CardInfo_obu_status, p[6])
        _put(r, O_CardInfo_system_info, _b(p + 7, 26))
        _put(r, O_CardInfo_vehicle_file, _vehicle_file(vf, 79))
        _put(r, O_CardInfo_card_file, _card_file(cf, 50))
        _put(r, O_CardInfo_balance, _be(p + 162, 4))
        _put(r, O_CardInfo_file_0019, _b(p + 166, 43))
        _put(r, O_CardInfo_rest, _b(p + 209, n - 209))
        _put(r, O_CardInfo_trans_type, None)
        _put(r, O_CardInfo_card_type, None)
        _put(r, O_CardInfo_physical_card_type, None)
        _put(r, O_CardInfo_card_id, None)
    vehicle = None
    if framing == GENVICT or p[4] == 0:
        vehicle = _place(vf, vf_size, cf, False)
    return r, vehicle


cdef object _transaction(const unsigned char* p, Py_ssize_t n, int framing):
    r = _new(TransactionResult)
    _put(r, O_TransactionResult_obu_id, _b(p, 4))
    if framing == GENVICT:
        _put(r, O_TransactionResult_obu_type, p[4])
        _put(r, O_TransactionResult_error, p[5])
        _put(r, O_TransactionResult_psam_id, None)
        _put(r, O_TransactionResult_time_bcd, None)
        _put(r, O_TransactionResult_rest, _b(p + 6, n - 6))
    elif framing == ITS:
        _put(r, O_TransactionResult_error, p[4])
        _put(r, O_TransactionResult_obu_type, None)
        _put(r, O_TransactionResult_psam_id, _b(p + 5, 6))
        _put(r, O_TransactionResult_time_bcd, _b(p + 11, 7))
        _put(r, O_TransactionResult_rest, _b(p + 18, n - 18))
    else:
        _put(r, O_TransactionResult_error, p[4])
        _put(r, O_TransactionResult_obu_type, None)
        _put(r, O_TransactionResult_psam_id, None)
        _put(r, O_TransactionResult_time_bcd, None)
        _put(r, O_TransactionResult_rest, _b(p + 5, n - 5))
    return r


cdef object _rsu_status(const unsigned char* p, Py_ssize_t n, bint genvict_b2):
    r = _new(RsuStatus)
    _put(r, O_RsuStatus_status, p[0])
    _put(r, O_RsuStatus_rsu_switch, p[1] if genvict_b2 else None)
    _put(r, O_RsuStatus_psam_auth, p[2] if genvict_b2 else None)
    _put(r, O_RsuStatus_raw, _b(p, n))
    return r


cdef inline bint _heartbeat_b2(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    return n >= 5 and p[0] == 0 and p[1] == 0 and p[2] == 0 and p[3] == 0 and p[4] == 0x80


cdef object _parse(Raw* raw):
    """(record, vehicle) for the fast layouts; raise _Fallback for anything else."""
    cdef const unsigned char* p = raw.payload
    cdef Py_ssize_t n = raw.size
    cdef int t = raw.frame_type, framing = raw.framing, vf_size, cf_size
    if t == 0xB3 and framing != GENVICT:
        if n == 21 and framing == LANE:
            vf_size = 16
        elif n == 64 or n == 84:
            vf_size = n - 5
        else:
            raise _Fallback()
        r = _new(VehicleInfo)
        _put(r, O_VehicleInfo_obu_id, _b(p, 4))
        _put(r, O_VehicleInfo_error, p[4])
        _put(r, O_VehicleInfo_vehicle_file, _vehicle_file(p + 5, vf_size))
        return r, (_place(p + 5, vf_size, NULL, vf_size == 16) if p[4] == 0 else None)
    if t == 0xB4:
        if framing == LANE:
            if n != 102 and n != 109:
                raise _Fallback()
            return _card_info(p, n, LANE, 0, n - 59)
        if framing == ITS:
            if n == 182:
                vf_size, cf_size = 79, 50
            elif n == 175:
                vf_size, cf_size = 79, 43
            elif n == 162:
                vf_size, cf_size = 59, 50
            elif n == 155:
                vf_size, cf_size = 59, 43
            else:
                raise _Fallback()
            return _card_info(p, n, ITS, vf_size, cf_size)
        if n < 209:
            raise _Fallback()
        return _card_info(p, n, GENVICT, 79, 50)
    if t == 0xB2:
        if framing == GENVICT:
            if n != 3:
                raise _Fallback()
            return _rsu_status(p, n, True), None
        if (framing == LANE and n != 32 and n != 34) or (framing == ITS and n != 36):
            raise _Fallback()
        if _heartbeat_b2(p, n):
            h = _new(Heartbeat)
            _put(h, O_Heartbeat_raw, _b(p, n))
            return h, None
        return _obu_info(p, n, framing), None
    if t == 0xB5:
        if n < (6 if framing == GENVICT else 18 if framing == ITS else 5):
            raise _Fallback()
        return _transaction(p, n, framing), None
    if t == 0xB1:
        h = _new(Heartbeat)
        _put(h, O_Heartbeat_raw, _b(p, n))
        return h, None
    if t == 0xB0 and n >= 1:
        return _rsu_status(p, n, False), None
    raise _Fallback()


cdef dict _CODES = {"auto": AUTO, "lane": LANE, "its": ITS, "genvict": GENVICT,
                    Framing.LANE: LANE, Framing.ITS: ITS, Framing.GENVICT: GENVICT}
cdef list _NAMES = ["lane", "its", "genvict"]


cdef int _framing_code(object framing) except -2:
    code = _CODES.get(framing)
    if code is None:
        Framing(framing)  # raises the reference's ValueError for an unknown framing
        raise ValueError(f"unknown framing {framing!r}")
    return code


cdef object _decode_one(const unsigned char[::1] view, object data, int framing, unsigned char* scratch, object name):
    cdef Raw raw
    cdef Py_ssize_t n = view.shape[0]
    if n == 0 or not _unwrap(&view[0], n, framing, scratch, &raw):
        return _reference_decode(bytes(data), name)
    try:
        record, vehicle = _parse(&raw)
    except _Fallback:
        return _reference_decode(bytes(data), name)
    frame = _new(Frame)
    _put(frame, O_Frame_framing, _FRAMINGS[raw.framing])
    _put(frame, O_Frame_frame_type, _TYPES[raw.frame_type])
    _put(frame, O_Frame_seq, raw.seq)
    _put(frame, O_Frame_record, record)
    _put(frame, O_Frame_vehicle, vehicle)
    return frame


def decode(data, framing="auto"):
    """Decode one complete frame (bytes-like); same result or ``FrameError`` as the reference."""
    cdef unsigned char scratch[MAX_FRAME]
    cdef int code = _framing_code(framing)
    return _decode_one(data, data, code, scratch, "auto" if code == AUTO else _NAMES[code])


def decode_many(frames, framing="auto"):
    """Decode a sequence of frames; each result is a ``Frame`` or the ``FrameError`` it raised."""
    cdef unsigned char scratch[MAX_FRAME]
    cdef int code = _framing_code(framing)
    cdef object name = "auto" if code == AUTO else _NAMES[code]
    cdef list out = []
    for data in frames:
        try:
            out.append(_decode_one(data, data, code, scratch, name))
        except FrameError as exc:
            out.append(exc)
    return out


def check_many(const unsigned char[::1] buffer, const long long[::1] offsets, framing="auto"):
    """Run the framing checks (unescaping, BCC, CRC) on every frame of ``buffer`` (frame i spans
    ``offsets[i]:offsets[i+1]``) with the GIL released, so threads run it in parallel; returns how
    many passed. Builds no records: it measures the C part of ``decode`` alone."""
    cdef int code = _framing_code(framing)
    cdef Py_ssize_t count = offsets.shape[0] - 1, i
    cdef long long passed = 0
    cdef unsigned char scratch[MAX_FRAME]
    cdef Raw raw
    with nogil:
        for i in range(count):
            if _unwrap(&buffer[offsets[i]], offsets[i + 1] - offsets[i], code, scratch, &raw):
                passed += 1
    return passed
