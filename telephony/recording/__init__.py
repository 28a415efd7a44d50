"""A call's audio, both sides, recorded off the audio path (no Django).

The RX and TX threads hand each frame to the call's `RecordingTap` (`tap`) and return: a full
tap drops and counts recording frames, never call frames, and never waits. One writer thread
per process (`writer`) takes what the taps hold a few times a second, lays both sides on the
call's 20 ms timeline (`timeline`) and appends them to a stereo mu-law WAV spool file
(`wavfile`) as the call goes. When the call ends the finished file is handed to a `store`
callback: the storing side (Django's storage API) lives in `calls`, behind the line observer.
"""
