@echo off
rem The guide's Quick Start (scripts\run_training.bat): train on data\processed into outputs\ with channel
rem tokens, from a checkout. Extra arguments are passed on. Double-clicked, the window stays open at the end.
rem Double-clicked, a script starts in its own folder: data\processed and outputs are the checkout's, one level up.
pushd "%~dp0.."
python "%~dp0cardiac-train" --data_dir data\processed --output_dir outputs --token_type channel %*
set status=%errorlevel%
popd
pause
exit /b %status%
