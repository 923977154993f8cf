package serve

// MaxHeaderBytes bounds a request's line and headers on every server the
// gateway runs (the API and the metrics listener); larger requests get 431
// before any handler runs. Go's default is 1 MiB, which let a single
// made-up method name of hundreds of KB reach the router, the access log
// and the metrics. The largest legitimate header is a bearer token (at most
// auth.MaxTokenBytes, 8 KB), so 64 KiB leaves ample room.
const MaxHeaderBytes = 64 << 10
