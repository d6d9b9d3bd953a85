"""A small AeroScript-like language: parser, and a runner driven in simulated time (pure Python).

Syntax, one statement per line, `//` starts a comment, command names are case-insensitive::

    var $n = 3                       // variables start with $, are numbers, must be declared
    var $speed as real = 5           // `as <type>` is accepted and ignored
    $n = $n * 2 + (1 - $n) / 4       // + - * / and parentheses
    for $i = 1 to $n step 1          // counted loop, bounds inclusive, `step` optional (default 1)
        MoveIncremental(X, 0.5)
    end
    repeat 2                         // loop a fixed number of times
        Dwell(0.1)
    end
    MoveAbsolute(X, 10, 5)           // axis, target, speed (speed optional: the axis velocity)
    MoveAbsolute([X, Y], [1, 2], [5, 5])
    MoveIncremental(Y, -0.5)         // relative to where the axis is when the move starts
    MoveLinear([X, Y], [3, 4], 2)    // coordinated straight line, last argument the path speed
    WaitForInPosition(X)             // wait until the axes are at rest; no argument: all axes
    Dwell(0.5)                       // pause the program for 0.5 s (motion goes on)
    Enable(X)  Disable(X)  Home(X)
    PsoDistance(X, 0.01)             // PSO on axis X, a pulse every 0.01 of travel
    PsoWindow(X, 0, 10)              // pulses only while X is inside [0, 10]
    PsoArm()  PsoDisarm()

Timing: a motion command starts its move and the program goes on at once; a motion command on
an axis that is still moving first waits for it (moves on one axis queue up). The task ends
(Complete) when the last statement ran and every axis the program moved is at rest.

`parse` rejects syntax errors, unknown commands, unknown axes, wrong arguments and undeclared
variables, naming the line. `dry_run` then executes the program on a virtual machine, which
rejects out-of-limit targets and bad speeds before anything moves and returns the planned
duration used for `task_progress`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .backend import MotionError
from .limits import MAX_DWELL, check_can_move, check_speed, check_target
from .profile import move_duration

MAX_STEPS = 100_000
MAX_LINES = 10_000
MAX_CHARACTERS = 1_000_000
MAX_NESTING = 100  # parentheses and signs; deeper is not a real program and would exhaust the stack
Env = dict[str, float]
Expr = Callable[[Env], float]


class ProgramError(Exception):
    """A program error at `line` (1-based); the message starts with "line N: "."""

    def __init__(self, line: int, message: str, reason: str = "ProgramError"):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = reason


# Machine: what the runner drives. The simulator implements it on its axes, `VirtualMachine` for dry runs.


class Machine(Protocol):
    def motion_end_time(self, axes: Sequence[str]) -> float:
        """When the last of `axes` comes to rest; -inf when all are at rest already."""

    def position(self, axis: str) -> float: ...

    def move(
        self, t: float, axes: Sequence[str], targets: Sequence[float], speeds: Sequence[float | None], linear: bool
    ) -> None:
        """Start moves at time t (axes at rest); `linear`: one coordinated move at path speed speeds[0]."""

    def enable(self, t: float, axis: str) -> None: ...

    def disable(self, t: float, axis: str) -> None: ...

    def home(self, t: float, axis: str) -> None: ...

    def pso_configure(
        self,
        t: float,
        axis: str,
        distance: float | None = None,
        window_low: float | None = None,
        window_high: float | None = None,
    ) -> None: ...

    def pso_arm(self, t: float) -> None: ...

    def pso_disarm(self, t: float) -> None: ...


# Parsing

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<var>\$[A-Za-z_]\w*)"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<op>[()\[\],=+\-*/]))"
)


@dataclass
class _Tokens:
    line: int
    items: list[tuple[str, str]]
    pos: int = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ProgramError(self.line, "unexpected end of line")
        self.pos += 1
        return tok

    def accept(self, op: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == op:
            self.pos += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            tok = self.peek()
            found = f"'{tok[1]}'" if tok else "end of line"
            raise ProgramError(self.line, f"expected '{op}' but found {found}")

    def accept_word(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "name" and tok[1].lower() == word:
            self.pos += 1
            return True
        return False

    def done(self) -> bool:
        return self.pos >= len(self.items)


def _tokenize(line_no: int, text: str) -> _Tokens:
    items, pos = [], 0
    text = text.rstrip().removesuffix(";")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ProgramError(line_no, f"unexpected character '{text[pos:].strip()[0]}'")
        kind = m.lastgroup
        assert kind is not None
        items.append((kind, m.group(kind)))
        pos = m.end()
    return _Tokens(line_no, items)


class _ExprParser:
    """Recursive descent over + - * / ( ) numbers and $variables, compiled to closures."""

    def __init__(self, tokens: _Tokens, declared: set[str]):
        self.t = tokens
        self.declared = declared
        self.depth = 0

    def expr(self) -> Expr:
        left = self.term()
        while True:
            if self.t.accept("+"):
                left = _binary(left, self.term(), lambda a, b: a + b)
            elif self.t.accept("-"):
                left = _binary(left, self.term(), lambda a, b: a - b)
            else:
                return left

    def term(self) -> Expr:
        left = self.unary()
        while True:
            if self.t.accept("*"):
                left = _binary(left, self.unary(), lambda a, b: a * b)
            elif self.t.accept("/"):
                left = _binary(left, self.unary(), _divide(self.t.line))
            else:
                return left

    def unary(self) -> Expr:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise ProgramError(self.t.line, f"expression nested deeper than {MAX_NESTING} levels")
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> Expr:
        if self.t.accept("-"):
            inner = self.unary()
            return lambda env: -inner(env)
        if self.t.accept("+"):
            return self.unary()
        return self.atom()

    def atom(self) -> Expr:
        kind, text = self.t.take()
        if kind == "num":
            value = float(text)
            return lambda env: value
        if kind == "var":
            if text not in self.declared:
                raise ProgramError(self.t.line, f"variable {text} is not declared; add 'var {text}' before use")
            return lambda env: env[text]
        if kind == "op" and text == "(":
            inner = self.expr()
            self.t.expect(")")
            return inner
        raise ProgramError(self.t.line, f"expected a number, a $variable or '(' but found '{text}'")


def _binary(left: Expr, right: Expr, op: Callable[[float, float], float]) -> Expr:
    return lambda env: op(left(env), right(env))


def _divide(line: int) -> Callable[[float, float], float]:
    def divide(a: float, b: float) -> float:
        if b == 0:
            raise ProgramError(line, "division by zero")
        return a / b

    return divide


@dataclass(frozen=True)
class _Arg:
    """One command argument: a list of axis names, or a list of expressions (`is_list`: written [..])."""

    axes: tuple[str, ...] = ()
    exprs: tuple[Expr, ...] = ()
    is_list: bool = False


# Instructions


@dataclass
class _Instruction:
    line: int

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        """Do this statement at time t: return None when done, or the time to call again at."""
        raise NotImplementedError


@dataclass
class _Assign(_Instruction):
    name: str
    expr: Expr

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        run.env[self.name] = _finite(self.line, self.expr(run.env), self.name)
        run.pc += 1
        return None


@dataclass
class _LoopStart(_Instruction):
    """`for $v = a to b step s` (var set) or `repeat n` (hidden counter); jumps past `end` when done."""

    var: str
    start: Expr
    stop: Expr
    step: Expr
    end_pc: int = -1

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        start = _finite(self.line, self.start(run.env), "the loop start")
        stop = _finite(self.line, self.stop(run.env), "the loop end")
        step = _finite(self.line, self.step(run.env), "the loop step")
        if step == 0:
            raise ProgramError(self.line, "loop step is 0; the loop would never end")
        run.env[self.var] = start
        run.loops[run.pc] = (stop, step)
        run.pc = run.pc + 1 if _in_range(start, stop, step) else self.end_pc + 1
        return None


@dataclass
class _LoopEnd(_Instruction):
    start_pc: int
    var: str

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        stop, step = run.loops[self.start_pc]
        value = run.env[self.var] + step
        run.env[self.var] = value
        run.pc = self.start_pc + 1 if _in_range(value, stop, step) else run.pc + 1
        return None


def _in_range(value: float, stop: float, step: float) -> bool:
    tol = 1e-9 * max(1.0, abs(stop))
    return value <= stop + tol if step > 0 else value >= stop - tol


def _finite(line: int, value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ProgramError(line, f"{what} is {value}; expected a finite number")
    return value


@dataclass
class _Call(_Instruction):
    """A command; `action` does it at time t, after every axis in `waits_for` is at rest."""

    name: str
    waits_for: tuple[str, ...]
    action: Callable[[ProgramRunner, float], None]

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        if self.waits_for:
            end = run.machine.motion_end_time(self.waits_for)
            if end > t:
                return end
        try:
            self.action(run, t)
        except MotionError as exc:
            raise ProgramError(self.line, f"{self.name}: {exc}", exc.reason) from exc
        run.pc += 1
        return None


@dataclass
class _Dwell(_Instruction):
    seconds: Expr

    def execute(self, run: ProgramRunner, t: float) -> float | None:
        if run.dwell_until is None:
            seconds = _finite(self.line, self.seconds(run.env), "the dwell time")
            if seconds < 0:
                raise ProgramError(self.line, f"dwell time {seconds:g} s is negative")
            if seconds > MAX_DWELL:
                raise ProgramError(self.line, f"dwell time {seconds:g} s is longer than the maximum {MAX_DWELL:g} s")
            run.dwell_until = t + seconds
        if run.dwell_until > t:
            return run.dwell_until
        run.dwell_until = None
        run.pc += 1
        return None


@dataclass
class Program:
    """A parsed program: instructions plus every axis it moves or waits for."""

    text: str
    instructions: list[_Instruction]
    axes: tuple[str, ...]
    moved_axes: tuple[str, ...] = field(default=())


class _Parser:
    def __init__(self, text: str, axes: Collection[str]):
        self.text = text
        self.axes = {a.upper(): a for a in axes}
        self.declared: set[str] = set()
        self.code: list[_Instruction] = []
        self.open_loops: list[tuple[int, _LoopStart]] = []
        self.used_axes: dict[str, None] = {}
        self.moved_axes: dict[str, None] = {}
        self.hidden = 0

    def parse(self) -> Program:
        lines = self.text.splitlines()
        if len(lines) > MAX_LINES or len(self.text) > MAX_CHARACTERS:
            raise ProgramError(
                min(len(lines), MAX_LINES + 1),
                f"program too long ({len(lines)} lines, {len(self.text)} characters); "
                f"the limit is {MAX_LINES} lines and {MAX_CHARACTERS} characters",
            )
        for number, raw in enumerate(lines, start=1):
            code = raw.split("//", 1)[0].strip()
            if code:
                self.statement(number, _tokenize(number, code))
        if self.open_loops:
            line = self.open_loops[-1][1].line
            raise ProgramError(line, "loop is never closed; add 'end'")
        return Program(self.text, self.code, tuple(self.used_axes), tuple(self.moved_axes))

    def statement(self, line: int, tok: _Tokens) -> None:
        kind, text = tok.take()
        word = text.lower()
        if kind == "name" and word == "var":
            self.declaration(line, tok)
        elif kind == "var":
            if text not in self.declared:
                raise ProgramError(line, f"variable {text} is not declared; add 'var {text}' before use")
            tok.expect("=")
            self.code.append(_Assign(line, text, self.expr(tok)))
        elif kind == "name" and word == "for":
            self.for_loop(line, tok)
        elif kind == "name" and word == "repeat":
            count = self.expr(tok)
            self.hidden += 1
            counter = f"$__repeat{self.hidden}"
            self.open_loop(_LoopStart(line, counter, lambda env: 1.0, count, lambda env: 1.0))
        elif kind == "name" and word == "end":
            if not tok.accept_word("for"):
                tok.accept_word("repeat")
            if not self.open_loops:
                raise ProgramError(line, "'end' without a 'for' or 'repeat' to close")
            start_pc, start = self.open_loops.pop()
            self.code.append(_LoopEnd(line, start_pc, start.var))
            start.end_pc = len(self.code) - 1
        elif kind == "name":
            self.command(line, text, tok)
        else:
            raise ProgramError(line, f"a statement cannot start with '{text}'")
        if not tok.done():
            raise ProgramError(line, f"unexpected '{tok.peek()[1]}' after the statement")  # type: ignore[index]

    def declaration(self, line: int, tok: _Tokens) -> None:
        kind, name = tok.take()
        if kind != "var":
            raise ProgramError(line, f"expected a $name after 'var' but found '{name}'")
        if tok.accept_word("as"):
            kind, _ = tok.take()
            if kind != "name":
                raise ProgramError(line, "expected a type name after 'as'")
        value: Expr = (lambda env: 0.0) if not tok.accept("=") else self.expr(tok)
        self.declared.add(name)
        self.code.append(_Assign(line, name, value))

    def for_loop(self, line: int, tok: _Tokens) -> None:
        kind, name = tok.take()
        if kind != "var":
            raise ProgramError(line, f"expected a $variable after 'for' but found '{name}'")
        self.declared.add(name)
        tok.expect("=")
        start = self.expr(tok)
        if not tok.accept_word("to"):
            raise ProgramError(line, "expected 'to' in the for loop")
        stop = self.expr(tok)
        step: Expr = self.expr(tok) if tok.accept_word("step") else (lambda env: 1.0)
        self.open_loop(_LoopStart(line, name, start, stop, step))

    def open_loop(self, start: _LoopStart) -> None:
        self.open_loops.append((len(self.code), start))
        self.code.append(start)

    def expr(self, tok: _Tokens) -> Expr:
        return _ExprParser(tok, self.declared).expr()

    # Commands

    def command(self, line: int, name: str, tok: _Tokens) -> None:
        handler = _COMMANDS.get(name.lower())
        if handler is None:
            known = ", ".join(sorted(_COMMAND_NAMES))
            raise ProgramError(line, f"unknown command '{name}'; known commands: {known}")
        proper, compile_ = handler
        tok.expect("(")
        args: list[_Arg] = []
        if not tok.accept(")"):
            while True:
                args.append(self.argument(line, tok))
                if tok.accept(")"):
                    break
                tok.expect(",")
        self.code.append(compile_(self, line, proper, args))

    def argument(self, line: int, tok: _Tokens) -> _Arg:
        if tok.accept("["):
            items = [self.item(line, tok)]
            while tok.accept(","):
                items.append(self.item(line, tok))
            tok.expect("]")
            if all(isinstance(i, str) for i in items):
                return _Arg(axes=tuple(items), is_list=True)  # type: ignore[arg-type]
            if any(isinstance(i, str) for i in items):
                raise ProgramError(line, "a list mixes axis names and numbers")
            return _Arg(exprs=tuple(items), is_list=True)  # type: ignore[arg-type]
        item = self.item(line, tok)
        return _Arg(axes=(item,)) if isinstance(item, str) else _Arg(exprs=(item,))

    def item(self, line: int, tok: _Tokens) -> str | Expr:
        nxt = tok.peek()
        if nxt is not None and nxt[0] == "name":
            tok.take()
            axis = self.axes.get(nxt[1].upper())
            if axis is None:
                raise ProgramError(line, f"unknown axis '{nxt[1]}'; the axes are {', '.join(self.axes.values())}")
            self.used_axes[axis] = None
            return axis
        return self.expr(tok)

    def axes_arg(self, line: int, name: str, arg: _Arg, what: str = "the axes") -> tuple[str, ...]:
        if not arg.axes:
            raise ProgramError(line, f"{name}: {what} must be axis names, e.g. X or [X, Y]")
        return arg.axes

    def numbers_arg(self, line: int, name: str, arg: _Arg, count: int, what: str) -> tuple[Expr, ...]:
        if not arg.exprs:
            raise ProgramError(line, f"{name}: {what} must be numbers")
        if len(arg.exprs) == 1 and not arg.is_list:
            return arg.exprs * count
        if len(arg.exprs) != count:
            raise ProgramError(line, f"{name}: {count} axes but {len(arg.exprs)} {what}")
        return arg.exprs


def _arity(line: int, name: str, args: list[_Arg], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ProgramError(line, f"{name} takes {want} arguments, got {len(args)}")


def _compile_move(relative: bool, linear: bool):
    def compile_(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
        _arity(line, name, args, 2, 3)
        axes = p.axes_arg(line, name, args[0])
        if len(set(axes)) != len(axes):
            raise ProgramError(line, f"{name}: an axis is listed twice")
        values = p.numbers_arg(line, name, args[1], len(axes), "positions")
        if linear:
            speeds = p.numbers_arg(line, name, args[2], 1, "feedrate")[:1] if len(args) == 3 else ()
            if len(args) == 3 and len(args[2].exprs) != 1:
                raise ProgramError(line, f"{name}: the feedrate is one number, the path speed")
        else:
            speeds = p.numbers_arg(line, name, args[2], len(axes), "speeds") if len(args) == 3 else ()
        for axis in axes:
            p.moved_axes[axis] = None

        def action(run: ProgramRunner, t: float) -> None:
            targets = [_finite(line, v(run.env), "the position") for v in values]
            if relative:
                targets = [run.machine.position(a) + d for a, d in zip(axes, targets, strict=True)]
            given = [_finite(line, s(run.env), "the speed") for s in speeds]
            resolved: list[float | None] = [*given] if given else [None] * (1 if linear else len(axes))
            run.machine.move(t, axes, targets, resolved, linear)

        return _Call(line, name, axes, action)

    return compile_


def _compile_dwell(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 1, 1)
    return _Dwell(line, p.numbers_arg(line, name, args[0], 1, "seconds")[0])


def _compile_wait(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 0, 1)
    axes = p.axes_arg(line, name, args[0]) if args else tuple(p.axes.values())
    return _Call(line, name, axes, lambda run, t: None)


def _compile_axis_op(method: str):
    def compile_(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
        _arity(line, name, args, 1, 1)
        axes = p.axes_arg(line, name, args[0])
        if method == "home":
            for axis in axes:
                p.moved_axes[axis] = None

        def action(run: ProgramRunner, t: float) -> None:
            for axis in axes:
                getattr(run.machine, method)(t, axis)

        return _Call(line, name, axes, action)

    return compile_


def _compile_pso_distance(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 2, 2)
    axis = _single_axis(p, line, name, args[0])
    distance = p.numbers_arg(line, name, args[1], 1, "distance")[0]

    def action(run: ProgramRunner, t: float) -> None:
        run.machine.pso_configure(t, axis, distance=_finite(line, distance(run.env), "the distance"))

    return _Call(line, name, (), action)


def _compile_pso_window(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 3, 3)
    axis = _single_axis(p, line, name, args[0])
    low = p.numbers_arg(line, name, args[1], 1, "window low")[0]
    high = p.numbers_arg(line, name, args[2], 1, "window high")[0]

    def action(run: ProgramRunner, t: float) -> None:
        run.machine.pso_configure(
            t, axis, window_low=_finite(line, low(run.env), "low"), window_high=_finite(line, high(run.env), "high")
        )

    return _Call(line, name, (), action)


def _compile_pso_arm(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 0, 1)
    axis = _single_axis(p, line, name, args[0]) if args else None

    def action(run: ProgramRunner, t: float) -> None:
        if axis is not None:
            run.machine.pso_configure(t, axis)
        run.machine.pso_arm(t)

    return _Call(line, name, (), action)


def _compile_pso_disarm(p: _Parser, line: int, name: str, args: list[_Arg]) -> _Instruction:
    _arity(line, name, args, 0, 1)
    if args:
        _single_axis(p, line, name, args[0])
    return _Call(line, name, (), lambda run, t: run.machine.pso_disarm(t))


def _single_axis(p: _Parser, line: int, name: str, arg: _Arg) -> str:
    axes = p.axes_arg(line, name, arg, "the first argument")
    if len(axes) != 1:
        raise ProgramError(line, f"{name} takes one axis")
    return axes[0]


_COMMAND_NAMES = {
    "MoveAbsolute": _compile_move(relative=False, linear=False),
    "MoveIncremental": _compile_move(relative=True, linear=False),
    "MoveLinear": _compile_move(relative=False, linear=True),
    "Dwell": _compile_dwell,
    "WaitForInPosition": _compile_wait,
    "WaitForMotionDone": _compile_wait,
    "Enable": _compile_axis_op("enable"),
    "Disable": _compile_axis_op("disable"),
    "Home": _compile_axis_op("home"),
    "PsoDistance": _compile_pso_distance,
    "PsoWindow": _compile_pso_window,
    "PsoArm": _compile_pso_arm,
    "PsoDisarm": _compile_pso_disarm,
}
_COMMANDS = {name.lower(): (name, fn) for name, fn in _COMMAND_NAMES.items()}


def parse(text: str, axes: Collection[str]) -> Program:
    """Parse `text` for a controller with `axes`; raises ProgramError naming the first bad line."""
    if not text.strip():
        raise ProgramError(1, "the program is empty")
    return _Parser(text, axes).parse()


# Running


class ProgramRunner:
    """Executes a Program on a Machine in simulated time, one `resume(t)` at a time.

    `resume(t)` runs statements at time t until one has to wait, and returns the time to call
    again at, or None once the program finished and every axis it moved is at rest. Errors
    are raised as ProgramError naming the line.
    """

    def __init__(self, program: Program, machine: Machine, max_steps: int = MAX_STEPS):
        self.program = program
        self.machine = machine
        self.max_steps = max_steps
        self.env: Env = {}
        self.loops: dict[int, tuple[float, float]] = {}
        self.pc = 0
        self.steps = 0
        self.dwell_until: float | None = None

    @property
    def line(self) -> int:
        code = self.program.instructions
        if self.pc < len(code):
            return code[self.pc].line
        return code[-1].line if code else 0

    @property
    def finished(self) -> bool:
        return self.pc >= len(self.program.instructions)

    def resume(self, t: float) -> float | None:
        code = self.program.instructions
        while self.pc < len(code):
            instr = code[self.pc]
            wake = instr.execute(self, t)
            if wake is not None:
                return wake
            self.steps += 1
            if self.steps > self.max_steps:
                raise ProgramError(
                    instr.line, f"the program ran more than {self.max_steps} statements; is a loop endless?"
                )
        end = self.machine.motion_end_time(self.program.moved_axes) if self.program.moved_axes else -math.inf
        return end if end > t else None


@dataclass
class VirtualAxis:
    """What a dry run knows about an axis when the program starts."""

    name: str
    units: str
    position: float
    velocity: float
    max_velocity: float
    acceleration: float
    soft_limit_low: float
    soft_limit_high: float
    enabled: bool
    faults: tuple[str, ...]
    home_position: float = 0.0
    busy_until: float = -math.inf


class VirtualMachine:
    """A Machine that only validates and keeps time: moves end instantly on their targets in
    position and after their profile duration in time."""

    def __init__(
        self,
        axes: Sequence[VirtualAxis],
        validate_pso: Callable[..., None] | None = None,
        *,
        pso_axis: str | None = None,
        pso_distance: float = 0.0,
        pso_armed: bool = False,
    ):
        self.axes = {a.name: a for a in axes}
        self.validate_pso = validate_pso
        self.pso_axis = pso_axis
        self.pso_distance = pso_distance
        self.pso_armed = pso_armed

    def motion_end_time(self, axes: Sequence[str]) -> float:
        return max((self.axes[a].busy_until for a in axes), default=-math.inf)

    def position(self, axis: str) -> float:
        return self.axes[axis].position

    def move(
        self, t: float, axes: Sequence[str], targets: Sequence[float], speeds: Sequence[float | None], linear: bool
    ) -> None:
        for name, target in zip(axes, targets, strict=True):
            ax = self.axes[name]
            check_can_move(name, ax.enabled, ax.faults)
            check_target(name, target, ax.soft_limit_low, ax.soft_limit_high, ax.units)
        if linear:
            deltas = [target - self.axes[a].position for a, target in zip(axes, targets, strict=True)]
            path = linear_path_limits([self.axes[a] for a in axes], deltas)
            path_speed = path.default_speed if speeds[0] is None else speeds[0]
            if speeds[0] is not None:
                check_speed("/".join(axes), path_speed, path.max_speed, "path units")
            duration = move_duration(math.hypot(*deltas), path_speed, path.acceleration)
            for name, target in zip(axes, targets, strict=True):
                self.axes[name].position = target
                self.axes[name].busy_until = t + duration
            return
        for name, target, speed in zip(axes, targets, speeds, strict=True):
            ax = self.axes[name]
            if speed is not None:
                check_speed(name, speed, ax.max_velocity, ax.units)
            duration = move_duration(target - ax.position, speed or ax.velocity, ax.acceleration)
            ax.position = target
            ax.busy_until = t + duration

    def enable(self, t: float, axis: str) -> None:
        self.axes[axis].enabled = True

    def disable(self, t: float, axis: str) -> None:
        self.axes[axis].enabled = False

    def home(self, t: float, axis: str) -> None:
        self.move(t, [axis], [self.axes[axis].home_position], [None], False)

    def pso_configure(
        self,
        t: float,
        axis: str,
        distance: float | None = None,
        window_low: float | None = None,
        window_high: float | None = None,
    ) -> None:
        if self.pso_armed and (axis != self.pso_axis or distance not in (None, self.pso_distance)):
            raise MotionError("PsoArmed", "PSO is armed; PsoDisarm before changing the PSO axis or distance.")
        if self.validate_pso is not None:
            self.validate_pso(axis=axis, distance=distance, window_low=window_low, window_high=window_high)
        self.pso_axis = axis
        if distance is not None:
            self.pso_distance = distance

    def pso_arm(self, t: float) -> None:
        self.pso_armed = True

    def pso_disarm(self, t: float) -> None:
        self.pso_armed = False


class PathLimits(NamedTuple):
    max_speed: float
    default_speed: float
    acceleration: float


class _AxisLimits(Protocol):
    velocity: float
    max_velocity: float
    acceleration: float


def linear_path_limits(axes: Sequence[_AxisLimits], deltas: Sequence[float]) -> PathLimits:
    """Speed and acceleration limits along a straight line so that no axis exceeds its own.

    The default path speed is the lowest default velocity of the axes that move, capped by
    the maximum path speed.
    """
    length = math.hypot(*deltas)
    max_speed, acceleration, default = math.inf, math.inf, math.inf
    for ax, delta in zip(axes, deltas, strict=True):
        share = abs(delta) / length if length else 0.0
        if share > 0:
            max_speed = min(max_speed, ax.max_velocity / share)
            acceleration = min(acceleration, ax.acceleration / share)
            default = min(default, ax.velocity)
    if not math.isfinite(max_speed):  # nothing moves
        return PathLimits(1.0, 1.0, 1.0)
    return PathLimits(max_speed, min(default, max_speed), acceleration)


def dry_run(program: Program, machine: VirtualMachine) -> float:
    """Run `program` on `machine` without moving anything; return its planned duration in seconds.

    Raises ProgramError naming the line of the first statement that would fail (a target
    outside the soft limits, a bad speed, a disabled axis, an endless loop...).
    """
    runner = ProgramRunner(program, machine)
    t = 0.0
    while (wake := runner.resume(t)) is not None:
        t = wake
    return t
