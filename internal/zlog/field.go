package zlog

import (
	"fmt"
	"time"

	"go.uber.org/zap/zapcore"
)

// The constructors below build the same zapcore.Field as the zap function of
// the same name, so a line reads the same whichever package built it.

// String is zap.String.
func String(key, val string) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.StringType, String: val}
}

// Int is zap.Int.
func Int(key string, val int) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.Int64Type, Integer: int64(val)}
}

// Duration is zap.Duration.
func Duration(key string, val time.Duration) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.DurationType, Integer: int64(val)}
}

// Stringer is zap.Stringer.
func Stringer(key string, val fmt.Stringer) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.StringerType, Interface: val}
}

// Error is zap.Error: the key "error", no field for a nil error.
func Error(err error) zapcore.Field { return NamedError("error", err) }

// NamedError is zap.NamedError.
func NamedError(key string, err error) zapcore.Field {
	if err == nil {
		return zapcore.Field{Type: zapcore.SkipType}
	}
	return zapcore.Field{Key: key, Type: zapcore.ErrorType, Interface: err}
}

// Strings is zap.Strings.
func Strings(key string, ss []string) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.ArrayMarshalerType, Interface: stringArray(ss)}
}

// Ints is zap.Ints.
func Ints(key string, nums []int) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.ArrayMarshalerType, Interface: intArray(nums)}
}

type stringArray []string

func (ss stringArray) MarshalLogArray(arr zapcore.ArrayEncoder) error {
	for _, s := range ss {
		arr.AppendString(s)
	}
	return nil
}

type intArray []int

func (ns intArray) MarshalLogArray(arr zapcore.ArrayEncoder) error {
	for _, n := range ns {
		arr.AppendInt(n)
	}
	return nil
}

// Field is zap.Field (and zapcore.Field): one key and its value.
type Field = zapcore.Field
