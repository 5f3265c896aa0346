package wsclient

import (
	"errors"
	"fmt"
	"io"
)

// MessageReader reads a connection's messages one after another as their
// bytes arrive, without holding a message whole: for a caller that checks
// the bytes as they come, as bench does at full speed. ReadMessage is the
// simpler way to read one message.
type MessageReader struct {
	ws   *Conn
	op   Op    // the current message's type
	left int64 // payload bytes not yet read in the current frame
	fin  bool  // the current frame is the message's last
	open bool  // a message has started and its end has not been read
}

// Messages returns the connection's MessageReader. Reading with it and
// with ReadFrame or ReadMessage at once mixes up the frames.
func (ws *Conn) Messages() *MessageReader { return &ws.mr }

// Next reads up to the payload of the next message, answering pings and
// skipping pongs on the way, and returns the message's type. What is left
// of the message before is skipped. A close frame ends it with a
// *ClosedError.
func (m *MessageReader) Next() (Op, error) {
	if m.open {
		if _, err := io.Copy(io.Discard, m); err != nil {
			return 0, err
		}
	}
	for {
		f, n, err := m.ws.readHeader()
		if err != nil {
			return 0, err
		}
		switch f.Op {
		case Text, Binary:
			m.op, m.left, m.fin, m.open = f.Op, n, f.Fin, true
			return f.Op, nil
		case Continuation:
			return 0, errors.New("the server sent a continuation frame with no message started")
		}
		if err := m.control(f.Op, n); err != nil {
			return 0, err
		}
	}
}

// Read reads the current message's payload, and returns io.EOF at its
// end, whatever number of frames it came in.
func (m *MessageReader) Read(p []byte) (int, error) {
	for m.left == 0 {
		if !m.open {
			return 0, errors.New("read before the start of a message")
		}
		if m.fin {
			m.open = false
			return 0, io.EOF
		}
		// Control frames may come between a message's frames.
		f, n, err := m.ws.readHeader()
		if err != nil {
			return 0, err
		}
		switch f.Op {
		case Continuation:
			m.left, m.fin = n, f.Fin
			continue
		case Text, Binary:
			return 0, fmt.Errorf("the server started a %s message inside an unfinished %s one", f.Op, m.op)
		}
		if err := m.control(f.Op, n); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.ws.br.Read(p)
	m.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// control handles a control frame (or an unknown one) of op whose payload
// of n bytes is still to be read.
func (m *MessageReader) control(op Op, n int64) error {
	if op != Ping && op != Pong && op != Close {
		return fmt.Errorf("the server sent a frame with the unknown %s", op)
	}
	p := make([]byte, n) // at most 125 bytes, and rare
	if _, err := io.ReadFull(m.ws.br, p); err != nil {
		return err
	}
	switch op {
	case Ping:
		return m.ws.WriteFrame(true, Pong, p)
	case Pong:
		return nil
	}
	return Closed(p)
}
