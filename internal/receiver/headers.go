package receiver

import "net/http"

// MaxHeaderBytes caps a request's header fields: past it the answer is 431. They are counted
// as sent, each field as its `Name: value` line with the CRLF ending it (Host and
// Transfer-Encoding included), the request line not. The HTTP server itself refuses, also
// with 431, headers that with the request line exceed MaxHeaderBytes plus the 4 KiB its
// reader buffers, before the receiver sees them.
const MaxHeaderBytes = 16 << 10

// headerBytes is the size of r's header fields as MaxHeaderBytes counts them.
func headerBytes(r *http.Request) int {
	n := 0
	line := func(name, value string) { n += len(name) + len(": ") + len(value) + len("\r\n") }
	if r.Host != "" {
		line("Host", r.Host)
	}
	for _, te := range r.TransferEncoding {
		line("Transfer-Encoding", te)
	}
	for name, values := range r.Header {
		for _, v := range values {
			line(name, v)
		}
	}
	return n
}

// headersTooLarge fills a with a 431 when r's headers exceed MaxHeaderBytes.
func headersTooLarge(w http.ResponseWriter, r *http.Request, a *answer) bool {
	n := headerBytes(r)
	if n <= MaxHeaderBytes {
		return false
	}
	// The connection is not reused: the body is left unread.
	w.Header().Set("Connection", "close")
	fail(a, http.StatusRequestHeaderFieldsTooLarge, "request headers are %d bytes, over the limit of %d", n, MaxHeaderBytes)
	return true
}
