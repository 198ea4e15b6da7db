@echo off
rem Conveyor on Windows with Docker Desktop. The same verbs as setup.sh:
rem   setup.bat [run] [--workers N]   docker compose up -d --build --scale worker=N (default 2)
rem   setup.bat stop                  docker compose down
rem   setup.bat status                docker compose ps
rem   setup.bat test                  the test suite needs Linux: it runs ./setup.sh test in WSL
rem                                   when WSL is installed, and says so plainly when it is not.
setlocal EnableExtensions EnableDelayedExpansion
cd /d "%~dp0"

set "VERB=%~1"
if "%VERB%"=="" set "VERB=run"
if /i "%VERB:~0,2%"=="--" (
  set "VERB=run"
  goto parse_start
)
shift
:parse_start
set "WORKERS=2"
:parse
if "%~1"=="" goto dispatch
if /i "%~1"=="--workers" (
  set "WORKERS=%~2"
  shift & shift
  goto parse
)
echo xx unknown option "%~1" (use: setup.bat [run^|stop^|status^|test] [--workers N]) 1>&2
exit /b 2

:dispatch
if /i "%VERB%"=="run"    goto run
if /i "%VERB%"=="up"     goto run
if /i "%VERB%"=="stop"   goto stop
if /i "%VERB%"=="down"   goto stop
if /i "%VERB%"=="status" goto status
if /i "%VERB%"=="test"   goto test
if /i "%VERB%"=="help"   goto help
echo xx unknown verb "%VERB%" (use: setup.bat [run^|stop^|status^|test]) 1>&2
exit /b 2

:help
for /f "usebackq tokens=1,* delims= " %%a in (`findstr /b /c:"rem  " "%~f0"`) do echo %%b
exit /b 0

:need_docker
where docker >nul 2>nul || (echo xx docker is not installed: install Docker Desktop 1>&2 & exit /b 1)
docker info >nul 2>nul || (echo xx Docker Desktop is not running: start it and retry 1>&2 & exit /b 1)
docker compose version >nul 2>nul || (echo xx "docker compose" is missing: update Docker Desktop 1>&2 & exit /b 1)
exit /b 0

:secret
rem A WEBHOOK_SECRET generated once and kept in .run\secrets\webhook_secret, as setup.sh keeps it
rem (docker-compose.yml requires it; the Redis password compose generates itself, in its volume).
if not exist ".run\secrets" mkdir ".run\secrets"
if exist ".run\webhook_secret" if not exist ".run\secrets\webhook_secret" move ".run\webhook_secret" ".run\secrets\webhook_secret" >nul
if not exist ".run\secrets\webhook_secret" (
  powershell -NoProfile -Command "$b = New-Object byte[] 32; [Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($b); [IO.File]::WriteAllText('.run\secrets\webhook_secret', -join ($b | ForEach-Object { $_.ToString('x2') }))" || exit /b 1
)
set /p WEBHOOK_SECRET=<".run\secrets\webhook_secret"
rem The API key (the producer's and the notebook's) and the consumer's key table granting it every
rem producer and reads, as setup.sh makes them (docker-compose.yml mounts both as secrets).
if not exist ".run\secrets\api_key" (
  powershell -NoProfile -Command "$b = New-Object byte[] 32; [Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($b); [IO.File]::WriteAllText('.run\secrets\api_key', -join ($b | ForEach-Object { $_.ToString('x2') }))" || exit /b 1
)
if not exist ".run\secrets\api_keys" (
  powershell -NoProfile -Command "$k = [IO.File]::ReadAllText('.run\secrets\api_key').Trim(); [IO.File]::WriteAllText('.run\secrets\api_keys', $k + ' producer:*,read')" || exit /b 1
)
rem The operator's key (grant admin: the dashboard's Queues page), added to the table once.
if not exist ".run\secrets\admin_key" (
  powershell -NoProfile -Command "$b = New-Object byte[] 32; [Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($b); [IO.File]::WriteAllText('.run\secrets\admin_key', -join ($b | ForEach-Object { $_.ToString('x2') }))" || exit /b 1
)
powershell -NoProfile -Command "$a = [IO.File]::ReadAllText('.run\secrets\admin_key').Trim(); $t = [IO.File]::ReadAllText('.run\secrets\api_keys'); if (-not ($t -split [char]10 | Where-Object { $_.StartsWith($a + ' ') })) { [IO.File]::WriteAllText('.run\secrets\api_keys', $t.TrimEnd() + [char]10 + $a + ' admin' + [char]10) }" || exit /b 1
exit /b 0

:run
call :need_docker || exit /b 1
call :secret || exit /b 1
echo ==^> docker compose up -d --build --scale worker=%WORKERS%
docker compose up -d --build --scale worker=%WORKERS% || exit /b 1
echo ==^> waiting for the dashboard (http://localhost:5000/healthz)
set /a TRIES=0
:wait
curl.exe -fsS -o nul --max-time 2 http://127.0.0.1:5000/healthz >nul 2>nul && goto up
set /a TRIES+=1
if %TRIES% geq 300 (echo xx the dashboard did not come up: docker compose logs 1>&2 & exit /b 1)
timeout /t 1 /nobreak >nul
goto wait
:up
echo.
echo Conveyor is running (docker, %WORKERS% workers).
echo   dashboard      http://localhost:5000
echo   consumer API   http://localhost:8000   (POST /messages, GET /stats)
echo   webhook        http://localhost:8001   (GET /resources/{id})
echo   Redis          redis://localhost:6379
echo   Elasticsearch  http://localhost:9200
echo   logs           docker compose logs -f [service]
echo   stop           setup.bat stop
exit /b 0

:stop
call :need_docker || exit /b 1
call :secret || exit /b 1
docker compose down
exit /b %errorlevel%

:status
call :need_docker || exit /b 1
call :secret || exit /b 1
docker compose ps
exit /b %errorlevel%

:test
rem The suite starts real Redis and Elasticsearch processes and the real binaries; it runs on Linux.
where wsl >nul 2>nul || goto no_wsl
echo ==^> running ./setup.sh test inside WSL (Linux) as root: it installs Redis, a JDK and
echo     Elasticsearch with apt/Maven and needs Rust (cargo) installed for root in the WSL distribution
wsl -u root -- bash ./setup.sh test
exit /b %errorlevel%
:no_wsl
echo xx The test suite needs Linux: it starts Redis, Elasticsearch and the services natively. 1>&2
echo xx Install WSL (wsl --install), then run: wsl -u root ./setup.sh test 1>&2
exit /b 1
