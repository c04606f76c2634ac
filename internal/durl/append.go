package durl

import "strconv"

// AppendFrame appends the URL of a frame, as Frame returns it, to dst: a
// listing of a million frames writes their URLs without allocating one.
func AppendFrame(dst []byte, server string, job, frame int64) []byte {
	dst = append(dst, Scheme...)
	dst = append(dst, server...)
	dst = append(dst, '/')
	dst = strconv.AppendInt(dst, job, 10)
	dst = append(dst, "/frame/"...)
	return strconv.AppendInt(dst, frame, 10)
}
