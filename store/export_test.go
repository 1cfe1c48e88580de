package store

// SetSQLChunkSize sets the chunk size of a postgres:// or sqlite:// store, so
// that tests make objects of many chunks from little data.
func SetSQLChunkSize(s Store, n int) {
	ss, ok := As[*sqlStore](s)
	if !ok {
		panic("SetSQLChunkSize: not a SQL store: " + s.Name())
	}
	ss.chunkSize = n
}
