// Package source reads an update bundle from wherever it is: a file or a
// block device, a pipe, or an HTTP(S) server. The installer does not load
// the bundle first; it asks a Source for the byte ranges it needs and
// writes them to the target as they arrive, so a bundle larger than the
// device's free space (or RAM) installs with no temporary copy, the way
// RAUC's streaming mode does. The interface is package format/bundle's
// (bundle.Source, beside the reader that uses it); Source, Range and
// PieceSize here are aliases of it.
//
// # Sources
//
//   - File and NewReaderAt give random access (pread) to a regular file or
//     a block device; the size is found by seeking to the end, which works
//     for both. The reader is package format/bundle's (bundle.NewReaderAt),
//     which keel-init reads the recovery seed with.
//   - Stream reads a pipe (standard input: `curl … | keel install -`). It
//     has no size (Size is -1) and can only move forward: gaps between
//     ranges are read and thrown away, and a range before the current
//     position is an error. A read blocked on the pipe is given up when
//     the context ends (the stream is then broken). It is a Drainer: after
//     an install, Drain reads the rest of the pipe, up to a bound, so that
//     the writer does not die of SIGPIPE after a successful install.
//   - HTTP fetches ranges with HTTP Range requests (see below).
//   - Open picks one from what the user typed: "-", a URL, or a path.
//
// # Why ranges come in order
//
// Fetch takes sorted, non-overlapping ranges and calls its callback with
// their bytes in that order, in pieces of at most PieceSize bytes (a
// multiple of 4096 unless a piece ends its range, so the installer can
// write whole blocks). Because the order is fixed by the caller and not by
// the source, one installer serves all three kinds: a pipe simply reads
// forward, a file reads where it is told, and HTTP may fetch several
// ranges at once and still hand them over in order. An installer that
// needs the bundle's header before it knows which ranges to ask for calls
// Fetch more than once, each call after the previous one's ranges.
//
// # HTTP
//
// HTTP first sends `Range: bytes=0-0` to learn the size from the answer's
// Content-Range and to prove the server honours Range requests: a 200
// answer (the whole file) is refused with an error that says so, since
// streaming without range support would mean downloading everything
// (RAUC refuses such servers too). Fetch then
//
//   - joins adjacent ranges into one request and splits requests larger
//     than HTTPOptions.MaxRequest (pieces never straddle two requests);
//   - keeps up to HTTPOptions.Parallel requests in flight, each writing
//     into its own buffer, and hands bytes to the callback in order as
//     soon as they are there; a request's buffer is reused only once it
//     has been delivered, so at most Parallel requests are buffered;
//   - checks every answer: 206, a Content-Range for exactly the bytes
//     asked and the same bundle size, no content encoding, and a body of
//     exactly the asked length (ETags are not compared: servers behind a
//     load balancer may differ in them for the same file, and the
//     installer verifies the bytes anyway);
//   - retries connection errors, bodies cut short, stalls (no data for
//     HTTPOptions.StallTimeout) and 5xx, 408 and 429 answers with
//     exponential back-off, asking only for the bytes not received yet,
//     so no byte is fetched twice, delivered twice or skipped. 4xx answers
//     and certificate errors are not retried;
//   - ends a Fetch whose requests receive less than HTTPOptions.MinRate
//     bytes per second over the last HTTPOptions.MinRateWindow of time in
//     which a request was running (ErrTooSlow, not retried; by default
//     512 bytes/s over 10 minutes, below the slowest cellular links): the
//     stall timeout alone lets a server that sends a byte just before
//     each timeout hold an install for ever.
//
// HTTPS uses the system's root certificates plus HTTPOptions.CAFile.
// HTTPOptions.Headers (an Authorization header, for instance) go with
// every request.
//
// # Redirects
//
// Redirects are followed for every request anew (at most MaxRedirects in
// a row), and the Range header goes along, so a server that redirects to
// a CDN with signed URLs works; the answer at the end must still be a 206
// for exactly the bytes asked. The caller's headers go along only while
// every URL of the chain has the first URL's origin (scheme, host and
// port, RFC 6454): a redirect to another host, another port, or from
// http to https drops them, and Authorization and Cookie, for the rest of
// the chain, even if it comes back (the source logs once that it did;
// a CDN that needs credentials too must be given its URL directly). A
// redirect from https to http is refused (the request and the bundle
// would cross the network in clear), and so are schemes other than http
// and https (file://) and a loop; none of these refusals (ErrRedirect) is
// retried. net/http's own rule is looser: it keeps Authorization for a
// subdomain, another port or https to http on the same host, and every
// other header everywhere.
//
// Stats reports the bytes and requests a download took.
package source
