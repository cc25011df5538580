// libmosquitto 2.0 (Debian: libmosquitto-dev). Only MQTT/Mosquitto.swift uses it.
#include <mosquitto.h>
#include <mqtt_protocol.h>
